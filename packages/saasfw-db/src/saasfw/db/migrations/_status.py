"""Where a database's schema stands against the migration scripts: at head, ahead, behind.

For readiness during rolling deploys: a pod is not ready while its schema is *behind* its
code (its migrations have not run yet), but stays ready when the schema is *ahead* (a
newer version's pod has migrated it and this one is about to be replaced; migrations are
expected to stay compatible with the previous version).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from saasfw.db._database import Database
from saasfw.db._errors import MIGRATE_COMMAND, SchemaBehindError
from saasfw.db.migrations._config import migration_config

SchemaState = Literal["at_head", "ahead", "behind"]


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """The database's revisions compared with the scripts' heads.

    Attributes:
        state: ``at_head``; ``ahead`` (the database has a revision these scripts do not
            know: a newer version migrated it); ``behind`` (a head is not applied yet,
            including an empty database).
        current: the database's revisions (its ``alembic_version`` rows), sorted.
        heads: the scripts' head revisions, sorted.
    """

    state: SchemaState
    current: tuple[str, ...]
    heads: tuple[str, ...]

    @property
    def ready(self) -> bool:
        """Whether code at these scripts may serve this database (not behind)."""
        return self.state != "behind"


def classify(
    current: tuple[str, ...], heads: tuple[str, ...], known: frozenset[str]
) -> SchemaState:
    """``at_head``/``ahead``/``behind`` for database revisions ``current``."""
    if any(revision not in known for revision in current):
        return "ahead"
    return "at_head" if set(current) == set(heads) else "behind"


class SchemaVersionCheck:
    """Compares one service's database with its migration scripts (read once, here).

    ``await check.status()`` reports; ``await check()`` is a readiness check in the
    health-check shape ``async () -> None``: it raises ``SchemaBehindError`` when the
    schema is behind and returns when it is at head or ahead. Building it reads the
    versions directory (blocking, once, at start-up).

    Example:
        check = SchemaVersionCheck(db, versions_dir=VERSIONS_DIR)
        registry.add("schema", check)  # readiness (the default group)
    """

    __slots__ = ("_database", "_heads", "_known")

    def __init__(self, database: Database, *, versions_dir: str | os.PathLike[str]) -> None:
        config = migration_config(
            database.settings, service=database.service, versions_dir=versions_dir
        )
        script = ScriptDirectory.from_config(config)
        self._database = database
        self._heads = tuple(sorted(script.get_heads()))
        self._known = frozenset(revision.revision for revision in script.walk_revisions())

    async def status(self) -> SchemaStatus:
        """Read the database's revisions and compare them with the scripts' heads."""
        async with self._database.engine.connect() as connection:
            current = await connection.run_sync(_current_revisions)
        return SchemaStatus(
            state=classify(current, self._heads, self._known), current=current, heads=self._heads
        )

    async def __call__(self) -> None:
        status = await self.status()
        if not status.ready:
            raise SchemaBehindError(
                f"the database schema of service {self._database.service} is behind this "
                f"code (database at {list(status.current) or 'no revision'}, code at "
                f"{list(status.heads)}); run the migrations ({MIGRATE_COMMAND}) or wait for "
                "the instance or job running them",
                current=status.current,
                heads=status.heads,
            )


def _current_revisions(connection: Connection) -> tuple[str, ...]:
    return tuple(sorted(MigrationContext.configure(connection).get_current_heads()))


async def schema_status(
    database: Database, *, versions_dir: str | os.PathLike[str]
) -> SchemaStatus:
    """One-off check: is ``database`` at head, ahead or behind the scripts in ``versions_dir``?

    Reads the versions directory on every call; for a repeated check (readiness) build a
    ``SchemaVersionCheck`` once.
    """
    return await SchemaVersionCheck(database, versions_dir=versions_dir).status()
