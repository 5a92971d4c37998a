"""``upgrade_to_head``: the start-up migration of one service, under its migration lock."""

from __future__ import annotations

import os

from saasfw.db._settings import DbSettings
from saasfw.db.migrations._config import DEFAULT_LOCK_TIMEOUT, migration_config


def upgrade_to_head(
    settings: DbSettings,
    *,
    service: str,
    versions_dir: str | os.PathLike[str],
    create_schema: bool = False,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
) -> None:
    """Upgrade the service's database to the newest revision, once per fleet.

    On PostgreSQL the run holds the service schema's advisory lock: replicas starting
    together migrate one after the other, and all but the first find the schema at head
    and do nothing. Blocking (Alembic runs its own event loop): from async code call it
    in a thread, e.g. ``await asyncio.to_thread(upgrade_to_head, ...)``.

    Args:
        settings: the service's ``DbSettings``.
        service: the service name (the default PostgreSQL schema).
        versions_dir: the service's Alembic versions directory.
        create_schema: create a missing PostgreSQL schema (development).
        lock_timeout: seconds to wait for another instance's run; None waits as long as
            it takes. Expiry raises ``DatabaseUnavailableError``.
    """
    from alembic import command

    config = migration_config(
        settings,
        service=service,
        versions_dir=versions_dir,
        create_schema=create_schema,
        lock_timeout=lock_timeout,
    )
    command.upgrade(config, "head")
