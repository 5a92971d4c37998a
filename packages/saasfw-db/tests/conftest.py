"""Fixtures of the saasfw-db suite: a ``Database`` on SQLite and on a real PostgreSQL.

Every PostgreSQL test gets its own schema and ``application_name`` (the server is shared
with other test runs); both are dropped/closed at teardown.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import MetaData

from saasfw.db import Database, DbSettings

DatabaseFactory = Callable[..., Awaitable[Database]]


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """None for SQLite (the default file under data_dir), the test server for PostgreSQL."""
    if backend == "sqlite":
        return None
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def database_factory(
    backend_url: str | None, tmp_path: Path
) -> AsyncIterator[DatabaseFactory]:
    """Build ``Database`` objects whose tables (``metadata``) exist; cleaned up afterwards."""
    created: list[Database] = []
    schemas: list[str] = []

    async def make(
        metadata: MetaData | None = None,
        *,
        schema: str | None = None,
        actor_provider: Callable[[], str | None] | None = None,
        tenant_provider: Callable[[], str | None] | None = None,
        **overrides: Any,
    ) -> Database:
        settings: dict[str, Any] = {"data_dir": tmp_path / "var", **overrides}
        if backend_url is not None:
            if schema is None:
                schema = unique("t")
                async with admin_connection(backend_url) as admin:
                    await admin.execute(f'CREATE SCHEMA "{schema}"')
                schemas.append(schema)
            settings.update(url=backend_url, schema_name=schema)
        database = Database(
            DbSettings(**settings),
            service="svc",
            actor_provider=actor_provider,
            tenant_provider=tenant_provider,
            application_name=unique("saasfw-db-test"),
        )
        created.append(database)
        if metadata is not None:
            async with database.engine.begin() as connection:
                await connection.run_sync(metadata.create_all)
        return database

    yield make
    for database in created:
        await database.close()
    if backend_url is not None and schemas:
        async with admin_connection(backend_url) as admin:
            for schema in schemas:
                await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class admin_connection:
    """``async with admin_connection(url) as conn``: a plain asyncpg connection."""

    def __init__(self, url: str, database: str | None = None) -> None:
        self.url = url
        self.database = database
        self.connection: Any = None

    async def __aenter__(self) -> Any:
        kwargs: dict[str, Any] = {"server_settings": {"application_name": "saasfw-db-test-admin"}}
        if self.database is not None:
            kwargs["database"] = self.database
        self.connection = await asyncpg.connect(self.url, **kwargs)
        return self.connection

    async def __aexit__(self, *exc: object) -> None:
        assert self.connection is not None
        await self.connection.close()


@pytest.fixture
def admin_connect() -> type[admin_connection]:
    """The admin connection helper (tests cannot import conftest under importlib mode)."""
    return admin_connection
