"""Tables made under an advisory lock: replicas starting together make each table once."""

from __future__ import annotations

import asyncio

from sqlalchemy import Column, Integer, MetaData, Table, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from saasfw.core import advisory_lock_key, advisory_xact_lock, create_missing_tables


def _tables() -> tuple[Table, Table]:
    metadata = MetaData()
    first = Table("lock_first", metadata, Column("id", Integer, primary_key=True))
    second = Table("lock_second", metadata, Column("id", Integer, primary_key=True))
    return first, second


async def test_eight_starters_at_once_make_each_table_once(engine: AsyncEngine) -> None:
    # Separate Table objects per "replica", as separate processes would have.
    await asyncio.gather(
        *(create_missing_tables(engine, "test:lock-tables", *_tables()) for _ in range(8))
    )
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert {"lock_first", "lock_second"} <= names
        await conn.execute(text("INSERT INTO lock_first (id) VALUES (1)"))
    # Made already: a later start changes nothing and does not fail.
    await create_missing_tables(engine, "test:lock-tables", *_tables())


async def test_the_transaction_lock_is_held_until_commit(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        async with engine.begin() as conn:  # nothing to take on SQLite, and no error
            await advisory_xact_lock(conn, "test:held")
        return
    key = advisory_lock_key("test:held")
    probe = "SELECT pg_try_advisory_xact_lock(:key)"
    async with engine.begin() as holder:
        await advisory_xact_lock(holder, "test:held")
        async with engine.begin() as other:
            assert (await other.execute(text(probe), {"key": key})).scalar() is False
    async with engine.begin() as other:
        assert (await other.execute(text(probe), {"key": key})).scalar() is True
