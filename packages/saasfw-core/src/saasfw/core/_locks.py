"""PostgreSQL advisory locks: one stable 64-bit key per name, and the DDL taken under one.

The key is the same in every process. :func:`advisory_xact_lock` and
:func:`create_missing_tables` need SQLAlchemy (the ``[sql]`` extra) and import it only when
called.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["advisory_lock_key", "advisory_xact_lock", "create_missing_tables"]


def advisory_lock_key(name: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock`` derived from ``name``.

    Replicas of any version compute the same key for the same name (no per-process hash
    seed), so they serialise on it; distinct names practically never collide.
    """
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def advisory_xact_lock(connection: AsyncConnection, name: str) -> None:
    """Hold ``name``'s advisory lock until ``connection``'s transaction ends (PostgreSQL).

    Elsewhere (SQLite) there is no such lock and nothing is taken: a single SQLite file is
    a single-instance store, and the DDL callers use ``IF NOT EXISTS`` semantics anyway.
    """
    if connection.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    await connection.execute(
        text("SELECT pg_advisory_xact_lock(:key)"), {"key": advisory_lock_key(name)}
    )


async def create_missing_tables(engine: AsyncEngine, lock: str, *tables: Table) -> None:
    """Create each of ``tables`` that is missing, in one transaction under ``lock``.

    Replicas starting together take turns on the advisory lock, so no two race on
    ``CREATE TABLE`` (which PostgreSQL can refuse on its catalog's unique indexes even with
    ``IF NOT EXISTS``); a service whose migrations already made the tables changes nothing.
    """

    from sqlalchemy.schema import CreateIndex, CreateTable

    async with engine.begin() as connection:
        await advisory_xact_lock(connection, lock)
        if connection.dialect.name == "postgresql":
            for table in tables:
                await connection.run_sync(table.create, checkfirst=True)
            return
        # No lock to wait on elsewhere: starters that race are saved by IF NOT EXISTS.
        for table in tables:
            await connection.execute(CreateTable(table, if_not_exists=True))
            for index in table.indexes:
                await connection.execute(CreateIndex(index, if_not_exists=True))
