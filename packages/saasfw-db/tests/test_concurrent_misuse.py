"""Issue 17: several tasks on one unit of work get a typed error, and the pool survives it.

Each misuse must raise ``ConcurrentSessionUseError``, roll the whole unit back and return
its connection; after hundreds of them the pool is at its baseline and normal work goes on.
"""

# No "from __future__ import annotations": FastAPI resolves the local Annotated aliases.
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import MetaData, String, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from saasfw.db import (
    BigIntPrimaryKey,
    ConcurrentSessionUseError,
    Database,
    DatabaseError,
    Repository,
    install_exception_handlers,
)

DatabaseFactory = Callable[..., Awaitable[Database]]
MISUSES = 200
# Generous: a misuse that hangs must fail the test, not stall the run; never a speed check.
HANG_LIMIT = 60.0


class Model(DeclarativeBase):
    metadata = MetaData()


class Note(BigIntPrimaryKey, Model):
    __tablename__ = "notes"

    text: Mapped[str] = mapped_column(String(100))


class NoteRepository(Repository[Note]):
    model = Note


@pytest.fixture
async def db(database_factory: DatabaseFactory) -> Database:
    # A small pool without overflow: a single leaked connection per misuse would exhaust it
    # long before the 200th.
    return await database_factory(Model.metadata, pool_size=3, max_overflow=0, pool_timeout=5.0)


def checked_out(db: Database) -> int:
    return int(db.engine.pool.checkedout())  # type: ignore[attr-defined]


async def count_notes(db: Database) -> int:
    async with db.unit_of_work() as uow:
        return int(await uow.session.scalar(select(func.count(Note.id))) or 0)


async def misuse_with_gather(db: Database, n: int) -> None:
    async with db.unit_of_work() as uow:
        repo = NoteRepository(uow.session)
        await asyncio.gather(repo.add(Note(text=f"a{n}")), repo.add(Note(text=f"b{n}")))


async def misuse_swallowed(db: Database, n: int) -> None:
    """The error is swallowed inside; the unit must still refuse to commit."""
    async with db.unit_of_work() as uow:
        repo = NoteRepository(uow.session)
        await asyncio.gather(
            repo.add(Note(text=f"a{n}")),
            repo.count(),
            repo.add(Note(text=f"b{n}")),
            return_exceptions=True,
        )


async def misuse_with_task_group(db: Database, n: int) -> None:
    """A TaskGroup cancels the sibling in the middle of its statement."""
    async with db.unit_of_work() as uow:
        repo = NoteRepository(uow.session)
        async with asyncio.TaskGroup() as group:
            group.create_task(repo.add(Note(text=f"a{n}")))
            group.create_task(uow.session.execute(text("SELECT 1")))


async def misuse_from_the_owner_task(db: Database, n: int) -> None:
    """The unit's own task runs first; a background task is refused and the unit notices."""
    async with db.unit_of_work() as uow:
        repo = NoteRepository(uow.session)
        statement = asyncio.ensure_future(repo.add(Note(text=f"a{n}")))
        intruder = asyncio.ensure_future(repo.count())
        await asyncio.wait([statement, intruder])
        statement.result()
        if not isinstance(intruder.exception(), ConcurrentSessionUseError):
            intruder.result()  # let an unexpected outcome fail the test with its traceback


async def misuse_with_savepoint(db: Database, n: int) -> None:
    """A savepoint opened by a second task while the first one flushes."""
    async with db.unit_of_work() as uow:
        repo = NoteRepository(uow.session)

        async def in_savepoint() -> None:
            async with uow.savepoint():
                await repo.add(Note(text=f"s{n}"))

        await asyncio.gather(repo.add(Note(text=f"a{n}")), in_savepoint())


MISUSE_KINDS = (misuse_with_gather, misuse_swallowed, misuse_with_task_group, misuse_with_savepoint)


def concurrent_use_error(error: BaseException) -> ConcurrentSessionUseError | None:
    if isinstance(error, ConcurrentSessionUseError):
        return error
    if isinstance(error, BaseExceptionGroup):
        matched, _ = error.split(ConcurrentSessionUseError)
        if matched is not None:
            return concurrent_use_error(matched.exceptions[0])
    return None


async def test_200_misuses_raise_typed_errors_and_leave_the_pool_at_baseline(db: Database) -> None:
    assert checked_out(db) == 0
    kinds: dict[str, int] = {}
    for n in range(MISUSES):
        misuse = MISUSE_KINDS[n % len(MISUSE_KINDS)]
        with pytest.raises((ConcurrentSessionUseError, BaseExceptionGroup)) as info:
            async with asyncio.timeout(HANG_LIMIT):
                await misuse(db, n)
        error = concurrent_use_error(info.value)
        assert error is not None, repr(info.value)
        assert isinstance(error, DatabaseError)
        assert "unit of work" in str(error)
        assert checked_out(db) == 0, f"misuse {n} ({misuse.__name__}) kept a connection"
        kinds[misuse.__name__] = kinds.get(misuse.__name__, 0) + 1
    assert sum(kinds.values()) == MISUSES
    assert len(kinds) == len(MISUSE_KINDS)
    assert await count_notes(db) == 0  # every misused unit was rolled back, entirely
    async with db.unit_of_work() as uow:
        await NoteRepository(uow.session).add(Note(text="after"))
    assert await count_notes(db) == 1
    assert checked_out(db) == 0


async def test_misuse_detected_by_the_unit_of_work_when_its_own_task_wins(db: Database) -> None:
    for n in range(20):
        with pytest.raises(ConcurrentSessionUseError, match="rolled back instead of committed"):
            async with asyncio.timeout(HANG_LIMIT):
                await misuse_from_the_owner_task(db, n)
        assert checked_out(db) == 0
    assert await count_notes(db) == 0


async def test_cancelled_while_waiting_for_the_other_task_still_returns_the_connection(
    db: Database,
) -> None:
    """The unit's task is cancelled while it waits for the statement of another task."""
    slow = (
        text("SELECT 1 FROM pg_sleep(0.5)")
        if db.backend == "postgresql"
        else text(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) "
            "SELECT count(*) FROM c"
        )
    )
    running = asyncio.Event()
    others: list[asyncio.Task[Any]] = []

    async def work() -> None:
        async with db.unit_of_work() as uow:
            await NoteRepository(uow.session).add(Note(text="x"))

            async def other() -> None:
                running.set()
                await uow.session.execute(slow)

            others.append(asyncio.create_task(other()))
            await running.wait()
            await asyncio.sleep(0)  # the other task is inside its statement now
            await uow.session.execute(text("SELECT 1"))  # refused: raises

    worker = asyncio.create_task(work())
    await running.wait()
    for _ in range(5):
        await asyncio.sleep(0)
    worker.cancel()
    outcome = await asyncio.gather(worker, return_exceptions=True)
    # Cancelled while waiting (shielded) for the other task's statement to end.
    assert isinstance(outcome[0], asyncio.CancelledError)
    await asyncio.wait_for(asyncio.gather(*others, return_exceptions=True), HANG_LIMIT)
    async with asyncio.timeout(HANG_LIMIT):
        # The shielded ending finishes on its own; the pool has no event to wait on.
        while checked_out(db) != 0:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert await count_notes(db) == 0


def build_app(db: Database) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)
    Session = Annotated[AsyncSession, db.depends()]

    @app.post("/notes/misuse")
    async def misuse(session: Session) -> dict[str, str]:
        repo = NoteRepository(session)
        await asyncio.gather(repo.add(Note(text="a")), repo.add(Note(text="b")))
        return {"status": "unreachable"}

    @app.post("/notes/misuse-swallowed")
    async def misuse_swallowed(session: Session) -> dict[str, str]:
        repo = NoteRepository(session)
        await asyncio.gather(
            repo.add(Note(text="a")), repo.add(Note(text="b")), return_exceptions=True
        )
        return {"status": "looks fine to the handler"}

    @app.post("/notes", status_code=201)
    async def create(session: Session) -> dict[str, int]:
        return {"id": (await NoteRepository(session).add(Note(text="ok"))).id}

    return app


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(db))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_misuse_over_http_answers_a_problem_and_the_next_request_works(
    db: Database, client: httpx.AsyncClient
) -> None:
    for n in range(30):  # ten times the pool: a leak per request would show as 503/hang
        path = "/notes/misuse" if n % 2 else "/notes/misuse-swallowed"
        async with asyncio.timeout(HANG_LIMIT):
            response = await client.post(path)
        assert response.status_code == 500, response.text
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert body["code"] == "db.concurrent_session_use"
        assert body["title"] == "Concurrent session use"
        assert "Traceback" not in response.text
        assert checked_out(db) == 0
        async with asyncio.timeout(HANG_LIMIT):
            created = await client.post("/notes")
        assert created.status_code == 201, created.text
    assert await count_notes(db) == 30  # only the well-behaved requests wrote anything
    assert checked_out(db) == 0
