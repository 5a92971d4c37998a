"""Wiring saasfw.db: one Database per service, actor and tenant from the verified principal."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from saasfw.app._defaults import is_default
from saasfw.app._devsecrets import DEV_ENVIRONMENTS
from saasfw.app._effective import effective_for, loaded_for
from saasfw.app._inject import Provided
from saasfw.app._part import Check, Part
from saasfw.app._ports import actor_id, tenant_id
from saasfw.app._settings import ServiceSettings
from saasfw.config import ProductionRule, RuleContext, Violation, database_isolation_rule
from saasfw.db import Database, install_exception_handlers, production_problems

__all__ = [
    "DbSession",
    "build_database",
    "create_schema_if_missing",
    "database",
    "database_rules",
    "db_service_name",
    "db_session",
    "wire_database",
]

database: Provided[Database] = Provided("database")
"""The service's :class:`~saasfw.db.Database` as a dependency (lifespan singleton)."""


def db_service_name(service: str) -> str:
    """The service name as saasfw.db wants it (an SQL identifier: ``-`` becomes ``_``)."""
    return service.replace("-", "_")


def build_database(settings: ServiceSettings) -> Database:
    """The service's database, with ``created_by`` and tenant filters fed by the principal."""
    return Database(
        settings.db,
        service=db_service_name(settings.service),
        actor_provider=actor_id,
        tenant_provider=tenant_id,
        application_name=settings.service,
    )


async def db_session(db: Annotated[Database, Depends(database)]) -> AsyncIterator[AsyncSession]:
    """One session per request inside a unit of work: committed before the response is sent."""
    async with db.unit_of_work() as uow:
        yield uow.session


DbSession = Annotated[AsyncSession, Depends(db_session, scope="function")]
"""A request's session: ``async def handler(session: DbSession): ...``."""


async def create_schema_if_missing(db: Database) -> None:
    """Create the service's PostgreSQL schema (development and test only).

    In staging and production a provisioned role already owns its schema
    (``saasfw.db.provision_postgres_service``); the service never creates it there.
    """
    if db.schema is None:
        return
    # The schema name passed saasfw.db's identifier check: it cannot carry SQL.
    statement = text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"')  # nosec B608
    try:
        async with db.engine.begin() as connection:
            await connection.execute(statement)
    except IntegrityError:
        # Replicas starting together race on "IF NOT EXISTS" (a unique violation in
        # pg_namespace); the one that lost finds the schema the winner created.
        exists = text("SELECT 1 FROM pg_namespace WHERE nspname = :name")
        async with db.engine.connect() as connection:
            if (await connection.execute(exists, {"name": db.schema})).first() is None:
                raise


def _schema_check(
    db: Database, settings: ServiceSettings, migrations: str | os.PathLike[str]
) -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
    """Start-up (migrate when ``db.migrate_on_start``) and the readiness check it arms.

    Readiness is DOWN ("schema behind") while the database is older than the versions this
    code ships, and UP at head or ahead (a previous version's pod stays ready during a
    rollout whose Job already migrated).
    """
    armed: list[Callable[[], Awaitable[Any]]] = []

    async def prepare() -> None:
        from saasfw.db.migrations import prepare_schema  # Alembic only where it is used

        create = settings.env in DEV_ENVIRONMENTS
        armed.append(await prepare_schema(db, versions_dir=migrations, create_schema=create))

    async def check() -> None:
        if not armed:
            raise RuntimeError("the schema is not checked yet (start-up is running)")
        await armed[0]()

    return prepare, check


def wire_database(
    settings: ServiceSettings,
    given: Database | None = None,
    *,
    migrations: str | os.PathLike[str] | None = None,
) -> Part[Database] | None:
    """The service database as a part (None when ``components.database`` is off).

    In development and test the service's PostgreSQL schema is created when missing. With
    ``migrations`` (the service's Alembic versions directory) start-up upgrades to head
    under an advisory lock (unless ``db.migrate_on_start`` is off: a migration Job does it)
    and readiness reports a schema behind. The database's errors answer as problems.
    """
    if not settings.components.database:
        return None
    db = given if given is not None else build_database(settings)
    checks: list[Check] = [("database", db.health_check, settings.db.health_timeout)]
    prepare: Callable[[], Awaitable[None]] | None = None
    if migrations is not None:
        prepare, schema = _schema_check(db, settings, migrations)
        checks.append(("schema", schema, None))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with db.lifespan():
            if db.schema is not None and settings.env in DEV_ENVIRONMENTS:
                await create_schema_if_missing(db)
            if prepare is not None:
                await prepare()
            yield

    handlers = (install_exception_handlers,) if settings.components.problem_details else ()
    return Part(
        "database",
        db,
        provides=((database, db),),
        lifespan=lifespan,
        checks=tuple(checks),
        setup=handlers,
        responses=(503,),
    )


def _isolation() -> ProductionRule:
    """saasfw.config's isolation rule, applied to the database the service will really use.

    saasfw.db defaults the PostgreSQL schema to the service name and the SQLite file to
    ``<data_dir>/<service>/<service>.db``; the rule must judge those effective values.
    """
    inner = database_isolation_rule(url_path="db.url", schema_path="db.schema_name")

    def check(raw: Any, context: RuleContext) -> Iterator[str | Violation]:
        settings = loaded_for(raw, context)
        if settings is None:
            return
        db = settings.db
        service = db_service_name(settings.service)
        if db.url is None:
            root = settings.data_dir if is_default(db, "data_dir") else db.data_dir
            path = Path(root) / service / f"{service}.db"
            view = {"db": {"url": f"sqlite:///{path.resolve()}", "schema_name": None}}
        else:
            schema = (db.schema_name or service) if db.backend() == "postgresql" else None
            view = {"db": {"url": db.url.get_secret_value(), "schema_name": schema}}
        yield from inner.check(view, context)

    return ProductionRule("db.isolation", check, inner.fatal_in, inner.description)


def _safety(raw: Any, context: RuleContext) -> Iterator[Violation]:
    """saasfw.db's own checks.

    SQLite is judged by the fleet rule instead, which knows the instance count: one
    declared instance may keep its embedded database, several may not.
    """
    settings = effective_for(raw, context)
    if settings is None or not settings.components.database:
        return
    for message in production_problems(settings.db):
        setting = message.split(":", 1)[0].split(" ", 1)[0]
        if setting != "db.url":
            yield Violation("db", message, setting)


def database_rules() -> list[ProductionRule]:
    """The database's production rules: isolation from other services, and safe settings."""
    return [
        _isolation(),
        ProductionRule(
            "db", _safety, description="cursors signed with a shared secret; timeouts set"
        ),
    ]
