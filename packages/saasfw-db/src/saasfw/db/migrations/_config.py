"""Build an Alembic ``Config`` for one service from its settings (no alembic.ini needed)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from alembic.config import Config
from sqlalchemy import MetaData

from saasfw.db._database import Database
from saasfw.db._settings import DbSettings, validate_identifier

TEMPLATE_DIR = Path(__file__).parent / "template"
DEFAULT_LOCK_TIMEOUT = 600.0
"""Seconds a replica waits for another one's migration run (PostgreSQL) before failing."""


@dataclass(frozen=True)
class MigrationTarget:
    """What ``env.py`` needs: the service's settings, name and (optional) metadata."""

    settings: DbSettings
    service: str
    metadata: MetaData | None = None
    create_schema: bool = False
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT

    def database(self) -> Database:
        """A ``Database`` for the migration run (a small pool, closed after the run)."""
        return Database(self.settings, service=self.service)


def migration_config(
    settings: DbSettings,
    *,
    service: str,
    versions_dir: str | os.PathLike[str],
    metadata: MetaData | None = None,
    create_schema: bool = False,
    stdout: TextIO | None = None,
    lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
) -> Config:
    """An Alembic ``Config`` running the saasfw async env against ``versions_dir``.

    Each service keeps its revisions in its own directory; ``alembic.command`` functions
    take the result. ``metadata`` is only needed for ``revision --autogenerate``.
    ``create_schema`` creates the PostgreSQL schema when missing (development only: a
    provisioned service role already owns its schema). On PostgreSQL every run holds the
    service schema's migration lock; ``lock_timeout`` bounds the wait for another
    instance's run (None: wait as long as it takes).
    """
    validate_identifier(service, "service")
    versions = Path(versions_dir).resolve()
    versions.mkdir(parents=True, exist_ok=True)
    config = Config(stdout=stdout or sys.stdout)
    config.set_main_option("script_location", str(TEMPLATE_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(versions))
    config.attributes["saasfw.db.target"] = MigrationTarget(
        settings=settings,
        service=service,
        metadata=metadata,
        create_schema=create_schema,
        lock_timeout=lock_timeout,
    )
    return config
