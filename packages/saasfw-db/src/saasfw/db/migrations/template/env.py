"""Alembic environment shared by every saasfw service (async, per-service settings).

Alembic runs this file; ``saasfw.db.migrations.migration_config`` puts the service's
settings, name and metadata into ``config.attributes``. On PostgreSQL every run holds the
service schema's advisory lock (``_lock.py``), so replicas never migrate at once; the connection's
``search_path`` is the service schema, so the migrations and the ``alembic_version`` table
land there; on SQLite, batch mode makes ALTER TABLE work.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from saasfw.db._types import UtcDateTime
from saasfw.db.migrations._config import MigrationTarget
from saasfw.db.migrations._lock import migration_lock


def _render_item(kind: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render saasfw column types as plain SQLAlchemy types: revisions stay importable
    without this package's internals and keep working if the Python type changes."""
    if kind == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _run(connection: Connection, target: MigrationTarget) -> None:
    context.configure(
        connection=connection,
        target_metadata=target.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online(target: MigrationTarget) -> None:
    database = target.database()
    try:
        # First the lock, then everything else: concurrent CREATE SCHEMA IF NOT EXISTS
        # races too, and a waiting replica must read the version only after the run.
        async with (
            database.engine.connect() as connection,
            migration_lock(connection, database.schema, lock_timeout=target.lock_timeout),
        ):
            if database.schema is not None and target.create_schema:
                # Dev convenience; with provisioned roles the schema already exists.
                await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{database.schema}"'))
                await connection.commit()
            await connection.run_sync(_run, target)
            await connection.commit()
    finally:
        await database.close()


def _main() -> None:
    target = context.config.attributes.get("saasfw.db.target")
    if not isinstance(target, MigrationTarget):
        raise RuntimeError("run migrations through saasfw-db or saasfw.db.migrations")
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported; run them online")
    asyncio.run(_run_online(target))


_main()
