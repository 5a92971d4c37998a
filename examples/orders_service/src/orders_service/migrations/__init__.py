"""The orders service's Alembic revisions, run through saasfw.db's migration environment."""

from __future__ import annotations

from pathlib import Path

from alembic import command

from saasfw.db import Database
from saasfw.db.migrations import migration_config

__all__ = ["VERSIONS_DIR", "upgrade_to_head"]

VERSIONS_DIR = Path(__file__).parent / "versions"


def upgrade_to_head(database: Database, *, create_schema: bool) -> None:
    """Upgrade the service's database to the newest revision (blocking: run in a thread)."""
    config = migration_config(
        database.settings,
        service=database.service,
        versions_dir=VERSIONS_DIR,
        create_schema=create_schema,
    )
    command.upgrade(config, "head")
