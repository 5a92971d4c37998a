"""``prepare_schema``: the start-up step of a service's schema (migrate or only check).

With ``DbSettings.migrate_on_start`` (the default) every replica upgrades at start-up under
the migration lock. Without it a separate step runs ``saasfw-db upgrade`` (a Kubernetes Job,
a release pipeline) and the service only compares: a schema behind its code does not stop
the start-up, it keeps the pod out of readiness (``SchemaBehindError``) until the step has
run; at head or ahead (a newer version migrated during a rolling deploy) it is ready.
"""

from __future__ import annotations

import asyncio
import logging
import os

from saasfw.db._database import Database
from saasfw.db._errors import MIGRATE_COMMAND
from saasfw.db.migrations._config import DEFAULT_LOCK_TIMEOUT
from saasfw.db.migrations._status import SchemaVersionCheck
from saasfw.db.migrations._upgrade import upgrade_to_head

logger = logging.getLogger("saasfw.db.migrations")


async def prepare_schema(
    database: Database,
    *,
    versions_dir: str | os.PathLike[str],
    create_schema: bool = False,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
) -> SchemaVersionCheck:
    """Migrate (if ``migrate_on_start``) and return the schema's readiness check.

    Register the result as a readiness check: ``registry.add("schema", await
    prepare_schema(db, versions_dir=VERSIONS_DIR))``. Alembic runs in a thread (it has its
    own event loop and reads the versions directory from disk).

    Args:
        database: the service's started ``Database``.
        versions_dir: the service's Alembic versions directory.
        create_schema: create a missing PostgreSQL schema before migrating (development).
        lock_timeout: seconds to wait for another replica's migration run.

    Raises:
        DatabaseUnavailableError: the migration lock was not free within ``lock_timeout``.
        alembic.util.CommandError: a migration failed (the start-up must fail).
    """
    if database.settings.migrate_on_start:
        await asyncio.to_thread(
            upgrade_to_head,
            database.settings,
            service=database.service,
            versions_dir=versions_dir,
            create_schema=create_schema,
            lock_timeout=lock_timeout,
        )
    check = await asyncio.to_thread(SchemaVersionCheck, database, versions_dir=versions_dir)
    status = await check.status()
    if not status.ready:
        logger.warning(
            "the schema of service %s is behind this code (database at %s, code at %s): "
            "not ready until the migrations run (%s)",
            database.service,
            " ".join(status.current) or "no revision",
            " ".join(status.heads),
            MIGRATE_COMMAND,
        )
    return check
