"""Settings, engine configuration per backend, lifespan and the bounded health check."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from saasfw.db import (
    Database,
    DatabaseUnavailableError,
    DbSettings,
    MissingExtraError,
    production_problems,
)
from saasfw.db._translate import translating
from saasfw.db.migrations._cli import settings_from_env

DatabaseFactory = Callable[..., Awaitable[Database]]


def test_default_is_a_sqlite_file_under_the_service_data_dir(tmp_path: Path) -> None:
    db = Database(DbSettings(data_dir=tmp_path), service="orders")
    assert db.backend == "sqlite"
    assert db.schema is None
    assert db.url.drivername == "sqlite+aiosqlite"
    assert db.url.database == str(tmp_path / "orders" / "orders.db")
    assert (tmp_path / "orders").is_dir()


def test_postgres_url_gets_asyncpg_and_schema_defaults_to_service() -> None:
    db = Database(DbSettings(url="postgresql://u:hunter2@db:5432/app"), service="orders")
    assert db.backend == "postgresql"
    assert db.schema == "orders"
    assert db.url.drivername == "postgresql+asyncpg"
    assert "hunter2" not in repr(db)
    settings = DbSettings(url="postgresql://u:hunter2@db:5432/app")
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "mysql://u@h/db"},
        {"url": "postgresql+psycopg2://u@h/db"},
        {"url": "::not a url::"},
        {"schema_name": "Orders; DROP"},
        {"pool_size": 0},
        {"pool_timeout": 0},
        {"default_page_size": 500, "max_page_size": 100},
        {"unknown": 1},
        {"cursor_secret": "too-short"},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as info:
        DbSettings.model_validate(kwargs)
    assert "hunter2" not in str(info.value)


def test_invalid_url_error_does_not_echo_the_url() -> None:
    with pytest.raises(ValidationError) as info:
        DbSettings(url="mysql://u:hunter2@h/db")
    assert "hunter2" not in str(info.value)


def test_service_name_must_be_an_identifier() -> None:
    with pytest.raises(ValueError, match="identifier"):
        Database(DbSettings(), service="../etc")


def test_settings_from_env_reads_the_nested_prefix() -> None:
    settings = settings_from_env({"SAASFW_DB__POOL_SIZE": "7", "SAASFW_DB__ECHO": "true"})
    assert settings.pool_size == 7
    assert settings.echo is True


async def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(
    database_factory: DatabaseFactory, backend: str
) -> None:
    db = await database_factory(None)
    if backend != "sqlite":
        async with db.engine.connect() as connection:
            timeout = (await connection.execute(text("SHOW statement_timeout"))).scalar()
            name = (await connection.execute(text("SHOW application_name"))).scalar()
        assert timeout == "30s"
        assert name == db.application_name
        return
    async with db.engine.connect() as connection:
        pragma = {
            name: (await connection.execute(text(f"PRAGMA {name}"))).scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout")
        }
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000}


async def test_lifespan_checks_connectivity_and_disposes(
    database_factory: DatabaseFactory,
) -> None:
    db = await database_factory(None)
    async with db.lifespan():
        await db.health_check()
        assert db.engine.pool.checkedin() >= 1  # type: ignore[attr-defined]
    assert db.engine.pool.checkedin() == 0  # type: ignore[attr-defined]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung database)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


async def test_health_check_is_bounded_against_a_hung_server(silent_server: int) -> None:
    url = f"postgresql://nobody@127.0.0.1:{silent_server}/db"
    db = Database(DbSettings(url=url, health_timeout=0.5, connect_timeout=30), service="svc")
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailableError):
            await db.health_check()
        assert time.monotonic() - started < 0.5 + 2.0
        with pytest.raises(DatabaseUnavailableError):
            await db.startup()
    finally:
        await db.close()


async def test_health_check_reports_a_refused_connection(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = Database(DbSettings(url=f"postgresql://x@127.0.0.1:{port}/db"), service="svc")
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            await db.health_check()
        assert "127.0.0.1" not in str(info.value)
    finally:
        await db.close()
    await asyncio.sleep(0)


def test_production_problems_flag_unsafe_defaults_without_secrets() -> None:
    problems = production_problems(DbSettings(echo=True, cursor_secret="short-secret-16+b"))
    text = "\n".join(problems)
    for needle in ("SQLite", "cursor_secret must be at least", "echo"):
        assert needle in text
    assert "short-secret" not in text
    safe = DbSettings(url="postgresql://svc:pw@db/app", cursor_secret="s" * 40)
    assert production_problems(safe) == []
    assert "unset" in "\n".join(production_problems(DbSettings(statement_timeout=None)))


async def test_in_memory_sqlite_url_works() -> None:
    db = Database(DbSettings(url="sqlite+aiosqlite:///:memory:"), service="svc")
    try:
        async with db.unit_of_work() as uow:
            assert (await uow.session.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await db.close()


def test_missing_postgres_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "asyncpg" else real(name, *a)
    )
    with pytest.raises(MissingExtraError, match=r"saasfw-db\[postgres\]") as info:
        Database(DbSettings(url="postgresql://u@h/db"), service="svc")
    assert isinstance(info.value, ImportError)


@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
async def test_statement_timeout_cancels_runaway_queries_as_unavailable(
    database_factory: DatabaseFactory,
) -> None:
    db = await database_factory(None, statement_timeout=0.2)

    async def runaway() -> None:
        async with db.unit_of_work() as uow:
            with translating():
                await uow.session.execute(text("SELECT pg_sleep(5)"))

    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError):
        await runaway()
    assert time.monotonic() - started < 4.0
