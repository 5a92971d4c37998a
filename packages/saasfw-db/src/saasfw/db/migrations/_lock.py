"""The migration lock: one PostgreSQL advisory lock per service schema around every run.

Every replica runs the migrations at start-up. Without a lock, two replicas starting
together both see an old revision and both run the same DDL: one of them fails (or, for
data migrations, both succeed and the data is changed twice). With it, the first replica
migrates while the others wait; they then find the schema at head and do nothing.

The lock is session-level (``pg_advisory_lock``), taken on the migration connection before
anything else, including ``CREATE SCHEMA``, and held across the migration transactions; it
is released explicitly afterwards and by PostgreSQL itself if the process dies. SQLite needs
none: one file, one instance.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from saasfw.core import advisory_lock_key
from saasfw.db._errors import DatabaseUnavailableError

logger = logging.getLogger("saasfw.db.migrations")

_LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of lock_timeout expiring


def migration_lock_key(schema: str) -> int:
    """The advisory lock key of ``schema``'s migrations: a stable signed 64-bit integer.

    Advisory locks are per database, so services in other schemas never wait for each other.
    """
    return advisory_lock_key(f"saasfw.db.migrations:{schema}")


@asynccontextmanager
async def migration_lock(
    connection: AsyncConnection, schema: str | None, *, lock_timeout: float | None
) -> AsyncIterator[None]:
    """Hold ``schema``'s migration lock on ``connection`` (PostgreSQL; a no-op on SQLite).

    Args:
        connection: the migration connection; its transaction is committed after locking.
        schema: the service schema (None on SQLite).
        lock_timeout: seconds to wait for another instance's run; None waits as long as it takes.

    Raises:
        DatabaseUnavailableError: the lock was not free within ``lock_timeout``.
    """
    if schema is None or connection.dialect.name != "postgresql":
        yield
        return
    key = migration_lock_key(schema)
    await _acquire(connection, schema, key, lock_timeout)
    try:
        yield
    finally:
        await _release(connection, schema, key)


async def _acquire(
    connection: AsyncConnection, schema: str, key: int, lock_timeout: float | None
) -> None:
    free = (
        await connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
    ).scalar_one()
    if not free:
        logger.info("another instance is migrating schema %s; waiting for it to finish", schema)
        # SET LOCAL: the limits apply to this wait only, not to the migrations after it.
        # statement_timeout from the settings would cut a legitimate wait short.
        await connection.execute(text("SET LOCAL statement_timeout = 0"))
        wait_ms = 0 if lock_timeout is None else max(1, int(lock_timeout * 1000))
        await connection.execute(text(f"SET LOCAL lock_timeout = {wait_ms}"))
        try:
            await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        except DBAPIError as error:
            if _sqlstate(error) != _LOCK_NOT_AVAILABLE:
                raise
            await connection.rollback()
            raise DatabaseUnavailableError(
                f"another instance held the migration lock of schema {schema} for more than "
                f"{lock_timeout}s; check for a stuck migration (pg_locks, locktype 'advisory'), "
                "or raise lock_timeout for long migrations"
            ) from error
        logger.info("migration lock of schema %s acquired", schema)
    # The session-level lock outlives this commit; the migrations run in fresh transactions.
    await connection.commit()


async def _release(connection: AsyncConnection, schema: str, key: int) -> None:
    try:
        await connection.rollback()  # a failed migration leaves its transaction aborted
        await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        await connection.commit()
    except Exception as error:
        # Closing the connection (right after this) releases the lock anyway.
        logger.warning(
            "could not release the migration lock of schema %s explicitly; it is released "
            "when the migration connection closes (%s)",
            schema,
            type(error).__name__,
        )


def _sqlstate(error: DBAPIError) -> str | None:
    original = error.orig
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return code if isinstance(code, str) else None
