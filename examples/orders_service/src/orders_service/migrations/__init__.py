"""The orders service's Alembic revisions, run through saasfw.db's migration environment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from saasfw.db import Database

__all__ = ["VERSIONS_DIR", "upgrade_to_head"]

VERSIONS_DIR = Path(__file__).parent / "versions"


def upgrade_to_head(database: Database, *, create_schema: bool) -> None:
    """Upgrade the service's database to the newest revision (blocking: run in a thread).

    Every replica calls this at start-up; on PostgreSQL saasfw.db runs it under the
    schema's advisory lock, so replicas starting together migrate exactly once.

    Alembic is imported here, not with the module: it costs tens of milliseconds and about
    6 MB, and a service that runs its migrations as a separate job never needs it.
    """
    from saasfw.db.migrations import upgrade_to_head as upgrade_under_lock

    upgrade_under_lock(
        database.settings,
        service=database.service,
        versions_dir=VERSIONS_DIR,
        create_schema=create_schema,
    )
