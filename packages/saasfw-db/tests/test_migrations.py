"""Acceptance 7: Alembic migrations per service, up and down, on SQLite and PostgreSQL.

These tests are synchronous on purpose: Alembic's async env runs its own event loop.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text

from saasfw.db import Database, DbSettings
from saasfw.db.migrations import main, migration_config

VERSIONS = Path(__file__).parent / "migrations" / "versions"


@pytest.fixture
def settings(backend_url: str | None, tmp_path: Path) -> Iterator[DbSettings]:
    if backend_url is None:
        yield DbSettings(data_dir=tmp_path / "var")
        return
    schema = f"m_{secrets.token_hex(5)}"
    yield DbSettings(url=backend_url, schema_name=schema)
    asyncio.run(_drop_schema(DbSettings(url=backend_url, schema_name=schema), schema))


async def _drop_schema(settings: DbSettings, schema: str) -> None:
    db = Database(settings, service="svc")
    try:
        async with db.engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    finally:
        await db.close()


def shape(settings: DbSettings) -> dict[str, list[str]]:
    """Tables (without alembic_version) and their columns, as the service sees them."""

    async def run() -> dict[str, list[str]]:
        db = Database(settings, service="svc")
        try:
            async with db.engine.connect() as connection:
                return await connection.run_sync(
                    lambda sync: {
                        table: sorted(c["name"] for c in inspect(sync).get_columns(table))
                        for table in inspect(sync).get_table_names()
                        if table != "alembic_version"
                    }
                )
        finally:
            await db.close()

    return asyncio.run(run())


def test_upgrade_downgrade_upgrade(settings: DbSettings) -> None:
    config = migration_config(settings, service="svc", versions_dir=VERSIONS, create_schema=True)
    command.upgrade(config, "head")
    assert shape(settings) == {"notes": ["body", "id", "pinned"]}
    command.downgrade(config, "0001")
    assert shape(settings) == {"notes": ["body", "id"]}
    command.downgrade(config, "base")
    assert shape(settings) == {}
    command.upgrade(config, "head")
    assert shape(settings) == {"notes": ["body", "id", "pinned"]}


MODELS = """
from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from saasfw.db import BigIntPrimaryKey, TimestampMixin


class Model(DeclarativeBase):
    metadata = MetaData()


class Ticket(BigIntPrimaryKey, TimestampMixin, Model):
    __tablename__ = "tickets"
    title: Mapped[str] = mapped_column(String(80))
"""


def test_cli_autogenerates_upgrades_reports_and_downgrades(
    settings: DbSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    module = f"svc_models_{secrets.token_hex(4)}"
    (tmp_path / f"{module}.py").write_text(MODELS)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name, value in settings.model_dump(exclude_none=True).items():
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        monkeypatch.setenv(f"SAASFW_DB__{name.upper()}", str(raw))
    versions = tmp_path / "versions"
    base = ["--service", "svc", "--versions", str(versions), "--create-schema"]
    meta = ["--metadata", f"{module}:Model.metadata"]
    assert main([*base, *meta, "revision", "-m", "create tickets", "--autogenerate"]) == 0
    (generated,) = versions.glob("*create_tickets.py")
    assert "create_table" in generated.read_text()
    assert main([*base, "upgrade"]) == 0
    assert "tickets" in shape(settings)
    capsys.readouterr()
    assert main([*base, "current"]) == 0
    assert generated.name.split("_")[0] in capsys.readouterr().out
    assert main([*base, "downgrade", "base"]) == 0
    assert shape(settings) == {}


def test_cli_rejects_bad_input_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAASFW_DB__POOL_SIZE", "zero")
    assert main(["--service", "svc", "--versions", str(tmp_path), "current"]) == 2
    assert "pool_size" in capsys.readouterr().err
    monkeypatch.delenv("SAASFW_DB__POOL_SIZE")
    assert main(["--service", "Bad-Name", "--versions", str(tmp_path), "current"]) == 2


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_console_script_is_installed(settings: DbSettings, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "saasfw-db"
    env = {**os.environ, "SAASFW_DB__DATA_DIR": str(tmp_path / "var"), "SAASFW_SERVICE_NAME": "svc"}
    result = subprocess.run(
        [str(script), "--versions", str(VERSIONS), "upgrade", "head"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "svc" / "svc.db").is_file()
