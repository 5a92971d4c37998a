"""Unit of work on SQLite and PostgreSQL (acceptance 1, 2, 3)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import MetaData, String, UniqueConstraint, event, func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from saasfw.db import (
    BigIntPrimaryKey,
    ConcurrentSessionUseError,
    ConflictError,
    Database,
    DuplicateKeyError,
    Repository,
    StaleVersionError,
    TimestampMixin,
    UnitOfWork,
    VersionMixin,
)

DatabaseFactory = Callable[..., Awaitable[Database]]


class Model(DeclarativeBase):
    metadata = MetaData()


class Account(BigIntPrimaryKey, TimestampMixin, VersionMixin, Model):
    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("email"),)

    email: Mapped[str] = mapped_column(String(100))
    balance: Mapped[int] = mapped_column(default=0)


class AccountRepository(Repository[Account]):
    model = Account
    filterable = frozenset({"email"})


class Boom(Exception):
    pass


@pytest.fixture
async def db(database_factory: DatabaseFactory) -> Database:
    return await database_factory(Model.metadata)


async def count_accounts(db: Database) -> int:
    async with db.unit_of_work() as uow:
        return int(await uow.session.scalar(select(func.count(Account.id))) or 0)


async def test_commits_on_success(db: Database) -> None:
    async with db.unit_of_work() as uow:
        await AccountRepository(uow.session).add(Account(email="a@x"))
    assert await count_accounts(db) == 1


async def test_exception_rolls_back_everything_and_surfaces_original(db: Database) -> None:
    async def work() -> None:
        async with db.unit_of_work() as uow:
            repo = AccountRepository(uow.session)
            await repo.add(Account(email="a@x"))
            await repo.add_many([{"email": f"b{i}@x"} for i in range(10)])
            raise Boom

    with pytest.raises(Boom):
        await work()
    assert await count_accounts(db) == 0


@pytest.fixture
def failing_rollback(db: Database) -> Iterator[list[int]]:
    """Make the real ROLLBACK fail (a connection event raising), then restore it."""
    calls: list[int] = []

    def fail(connection: Any) -> None:
        calls.append(1)
        raise RuntimeError("rollback failed: connection lost")

    event.listen(db.engine.sync_engine, "rollback", fail)
    yield calls
    event.remove(db.engine.sync_engine, "rollback", fail)


async def test_original_error_survives_a_failing_rollback(
    db: Database, failing_rollback: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    async def work() -> None:
        async with db.unit_of_work() as uow:
            await AccountRepository(uow.session).add(Account(email="a@x"))
            raise Boom("the real problem")

    with caplog.at_level(logging.WARNING, logger="saasfw.db"), pytest.raises(Boom) as info:
        await work()
    assert failing_rollback, "the rollback was attempted"
    assert str(info.value) == "the real problem"
    assert any("rollback also failed" in note for note in info.value.__notes__)
    assert "rollback failed after Boom" in caplog.text


async def test_savepoint_failure_keeps_outer_work(db: Database) -> None:
    async with db.unit_of_work() as uow:
        repo = AccountRepository(uow.session)
        await repo.add(Account(email="outer@x"))

        async def inner() -> None:
            async with uow.savepoint():
                await repo.add(Account(email="inner@x"))
                await repo.add(Account(email="outer@x"))  # duplicate key

        with pytest.raises(DuplicateKeyError):
            await inner()
        await repo.add(Account(email="after@x"))
    async with db.unit_of_work() as uow:
        emails = set((await uow.session.scalars(select(Account.email))).all())
    assert emails == {"outer@x", "after@x"}


async def test_savepoint_success_is_part_of_outer_transaction(db: Database) -> None:
    async def work() -> None:
        async with db.unit_of_work() as uow:
            async with uow.savepoint():
                await AccountRepository(uow.session).add(Account(email="a@x"))
            raise Boom

    with pytest.raises(Boom):
        await work()
    assert await count_accounts(db) == 0


async def test_nested_savepoints(db: Database) -> None:
    async with db.unit_of_work() as uow:
        repo = AccountRepository(uow.session)
        async with uow.savepoint():
            await repo.add(Account(email="1@x"))

            async def inner() -> None:
                async with uow.savepoint():
                    await repo.add(Account(email="2@x"))
                    raise Boom

            with pytest.raises(Boom):
                await inner()
        assert await repo.count() == 1
    assert await count_accounts(db) == 1


async def test_commit_failure_is_translated_and_rolled_back(db: Database) -> None:
    async with db.unit_of_work() as uow:
        await AccountRepository(uow.session).add(Account(email="a@x"))
    with pytest.raises(DuplicateKeyError):
        async with db.unit_of_work() as uow:
            uow.session.add(Account(email="a@x"))  # flushed only by the commit
    assert await count_accounts(db) == 1


async def test_unit_of_work_is_single_use(db: Database) -> None:
    uow = db.unit_of_work()
    with pytest.raises(RuntimeError):
        _ = uow.session
    async with uow:
        pass
    with pytest.raises(RuntimeError):
        async with uow:
            pass
    assert isinstance(uow, UnitOfWork)


def slow_statement(db: Database) -> Any:
    if db.backend == "postgresql":
        return text("SELECT 1 FROM pg_sleep(0.5)")
    return text(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
        "SELECT count(*) FROM c"
    )


async def test_concurrent_use_of_one_session_raises_clear_error(db: Database) -> None:
    async def work() -> None:
        async with db.unit_of_work() as uow:
            await AccountRepository(uow.session).add(Account(email="a@x"))
            started = asyncio.Event()

            async def slow() -> object:
                started.set()
                return (await uow.session.execute(slow_statement(db))).scalar()

            first = asyncio.create_task(slow())
            await started.wait()
            await asyncio.sleep(0.05)
            with pytest.raises(ConcurrentSessionUseError, match="another task"):
                await uow.session.execute(text("SELECT 1"))
            assert await first is not None  # the first operation was not disturbed
            assert (await uow.session.execute(text("SELECT 1"))).scalar() == 1

    # The misuse was caught inside, but the unit still refuses to commit half its work.
    with pytest.raises(ConcurrentSessionUseError, match="rolled back instead of committed"):
        await work()
    assert await count_accounts(db) == 0


async def test_concurrent_versioned_updates_exactly_one_wins(db: Database) -> None:
    """Acceptance 3: two writers hold version 1 (If-Match style) and update at once."""
    async with db.unit_of_work() as uow:
        account = await AccountRepository(uow.session).add(Account(email="a@x", balance=100))
    async with db.unit_of_work() as uow:
        seen = await AccountRepository(uow.session).get(account.id)
    barrier = asyncio.Barrier(2)

    async def withdraw(amount: int) -> str:
        try:
            async with db.unit_of_work() as uow:
                await barrier.wait()  # both transactions are open
                await AccountRepository(uow.session).update(
                    account.id, {"balance": seen.balance - amount}, expected_version=seen.version
                )
        except StaleVersionError:
            return "conflict"
        return "won"

    outcomes = await asyncio.gather(withdraw(30), withdraw(50))
    assert sorted(outcomes) == ["conflict", "won"]
    async with db.unit_of_work() as uow:
        final = await AccountRepository(uow.session).get(account.id)
    assert final.version == 2
    assert final.balance in (70, 50)  # exactly one withdrawal applied, nothing merged


async def test_concurrent_read_modify_write_in_one_transaction_exactly_one_wins(
    db: Database,
) -> None:
    """Read and write in the same transaction on both sides.

    PostgreSQL: the loser's UPDATE waits on the row lock, then matches no row of its
    version (StaleVersionError). SQLite: the loser's write is refused at once because its
    snapshot is stale (ConflictError). Either way: one winner, one 409, nothing lost.
    """
    async with db.unit_of_work() as uow:
        account = await AccountRepository(uow.session).add(Account(email="a@x", balance=100))
    barrier = asyncio.Barrier(2)

    async def withdraw(amount: int) -> str:
        try:
            async with db.unit_of_work() as uow:
                current = await AccountRepository(uow.session).get(account.id)
                await barrier.wait()  # both read version 1
                current.balance -= amount  # ORM flush checks version_id_col
        except ConflictError as error:
            return "stale" if isinstance(error, StaleVersionError) else "conflict"
        return "won"

    outcomes = await asyncio.gather(withdraw(30), withdraw(50))
    loser = "stale" if db.backend == "postgresql" else "conflict"
    assert sorted(outcomes) == sorted([loser, "won"])
    async with db.unit_of_work() as uow:
        final = await AccountRepository(uow.session).get(account.id)
    assert (final.version, final.balance in (70, 50)) == (2, True)


async def test_orm_flush_of_stale_object_raises_conflict(db: Database) -> None:
    async with db.unit_of_work() as uow:
        account = await AccountRepository(uow.session).add(Account(email="a@x", balance=1))

    async def work() -> None:
        async with db.unit_of_work() as reader:
            stale = await AccountRepository(reader.session).get(account.id)
            async with db.unit_of_work() as writer:
                await AccountRepository(writer.session).update(account.id, {"balance": 2})
            stale.balance = 3

    with pytest.raises(ConflictError) as info:
        await work()
    if db.backend == "postgresql":
        assert isinstance(info.value, StaleVersionError)
    # SQLite: the reader's snapshot is older than the write (SQLITE_BUSY_SNAPSHOT): 409 too.
    async with db.unit_of_work() as uow:
        assert (await AccountRepository(uow.session).get(account.id)).balance == 2
