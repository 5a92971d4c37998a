"""Wiring saasfw.db: one Database per service, actor and tenant from the verified principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from saasfw.app._inject import Provided
from saasfw.app._ports import actor_id, tenant_id
from saasfw.app._settings import ServiceSettings
from saasfw.db import Database

__all__ = [
    "DbSession",
    "build_database",
    "create_schema_if_missing",
    "database",
    "db_service_name",
    "db_session",
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
