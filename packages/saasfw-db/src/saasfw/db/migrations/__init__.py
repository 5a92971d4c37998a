"""Alembic migrations per service: configuration builder and the ``saasfw-db`` CLI.

Kept out of ``saasfw.db`` so that importing the package does not import Alembic.
"""

from saasfw.db.migrations._cli import main
from saasfw.db.migrations._config import MigrationTarget, migration_config

__all__ = ["MigrationTarget", "main", "migration_config"]
