"""Alembic migrations per service: configuration, the start-up upgrade, the schema check.

Kept out of ``saasfw.db`` so that importing the package does not import Alembic.

- ``upgrade_to_head``: upgrade at start-up; on PostgreSQL under the service schema's
  advisory lock, so replicas starting together migrate exactly once.
- ``prepare_schema``: the start-up step: migrate when ``DbSettings.migrate_on_start``, then
  return the schema's readiness check (one line in an app's lifespan).
- ``SchemaVersionCheck`` / ``schema_status``: check only; at head, ahead (fine: a newer
  version migrated) or behind (not ready), e.g. as a readiness check.
- ``migration_config``: an Alembic ``Config`` for ``alembic.command``; ``main``: the CLI.
"""

from saasfw.db._errors import MIGRATE_COMMAND
from saasfw.db.migrations._cli import main
from saasfw.db.migrations._config import DEFAULT_LOCK_TIMEOUT, MigrationTarget, migration_config
from saasfw.db.migrations._lock import migration_lock_key
from saasfw.db.migrations._startup import prepare_schema
from saasfw.db.migrations._status import (
    SchemaState,
    SchemaStatus,
    SchemaVersionCheck,
    schema_status,
)
from saasfw.db.migrations._upgrade import upgrade_to_head

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "MIGRATE_COMMAND",
    "MigrationTarget",
    "SchemaState",
    "SchemaStatus",
    "SchemaVersionCheck",
    "main",
    "migration_config",
    "migration_lock_key",
    "prepare_schema",
    "schema_status",
    "upgrade_to_head",
]
