"""Migrations at start-up or as their own step (``migrate_on_start``), on SQLite and PostgreSQL.

With ``migrate_on_start`` the start-up step migrates and the check is ready. Without it,
the service starts on a behind schema, its readiness check says so, and once the separate
step (``saasfw-db upgrade``) has run the same check object turns ready.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from saasfw.db import Database, DbSettings, SchemaBehindError
from saasfw.db.migrations import MIGRATE_COMMAND, main, prepare_schema, schema_status

DatabaseFactory = Callable[..., Awaitable[Database]]
VERSIONS = Path(__file__).parent / "migrations" / "versions"


def test_migrate_on_start_defaults_to_true_and_reads_from_the_environment() -> None:
    assert DbSettings().migrate_on_start is True
    assert DbSettings.model_validate({"migrate_on_start": "false"}).migrate_on_start is False


async def test_migrate_on_start_upgrades_then_the_check_is_ready(
    database_factory: DatabaseFactory,
) -> None:
    db = await database_factory()
    check = await prepare_schema(db, versions_dir=VERSIONS)
    assert (await check.status()).state == "at_head"
    await check()  # ready


async def test_without_migrate_on_start_it_starts_not_ready_until_the_step_runs(
    database_factory: DatabaseFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = await database_factory(migrate_on_start=False)
    caplog.set_level(logging.WARNING, logger="saasfw.db.migrations")
    check = await prepare_schema(db, versions_dir=VERSIONS)  # starts: no exception
    assert (await check.status()).state == "behind"
    with pytest.raises(SchemaBehindError, match=MIGRATE_COMMAND):
        await check()
    assert any(
        "behind" in r.getMessage() and MIGRATE_COMMAND in r.getMessage() for r in caplog.records
    )

    # The separate step: the CLI, configured from the environment as a Job's pod is.
    for name, value in {
        "SAASFW_DB__URL": db.settings.url.get_secret_value() if db.settings.url else None,
        "SAASFW_DB__SCHEMA_NAME": db.settings.schema_name,
        "SAASFW_DB__DATA_DIR": str(db.settings.data_dir),
        "SAASFW_DB__MIGRATE_ON_START": "false",  # the upgrade command migrates regardless
    }.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    step = ["--service", db.service, "--versions", str(VERSIONS), "upgrade"]
    assert await asyncio.to_thread(main, step) == 0  # Alembic runs its own event loop
    assert (await check.status()).state == "at_head"
    await check()  # the same check object, now ready


def test_cli_takes_a_versions_reference_and_a_dashed_service_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    package = tmp_path / "pkg" / "billing_migrations"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"VERSIONS_DIR = {str(VERSIONS)!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.setenv("SAASFW_DB__DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SAASFW_SERVICE_NAME", "billing-service")  # a DNS label, as in k8s
    monkeypatch.setenv("SAASFW_DB_MIGRATIONS", "billing_migrations:VERSIONS_DIR")
    try:
        assert main(["upgrade"]) == 0
        assert main(["check"]) == 0
        assert "at_head: database at 0002" in capsys.readouterr().out
        # The database of "billing-service" is the one saasfw.app names billing_service.
        assert (tmp_path / "var" / "billing_service" / "billing_service.db").is_file()
        assert main(["--versions", "billing_migrations:NOPE", "check"]) == 2
        assert "cannot import" in capsys.readouterr().err
    finally:
        sys.modules.pop("billing_migrations", None)


async def test_a_schema_ahead_of_the_code_stays_ready_without_migrating(
    database_factory: DatabaseFactory, tmp_path: Path
) -> None:
    db = await database_factory()
    newer = tmp_path / "newer"
    newer.mkdir()
    for revision in VERSIONS.glob("rev_*.py"):
        (newer / revision.name).write_text(revision.read_text())
    (newer / "rev_0003_tags.py").write_text(
        '"""tags"""\nimport sqlalchemy as sa\nfrom alembic import op\n'
        'revision = "0003"\ndown_revision = "0002"\nbranch_labels = None\ndepends_on = None\n'
        "def upgrade() -> None:\n"
        '    op.create_table("tags", sa.Column("id", sa.Integer(), primary_key=True))\n'
        "def downgrade() -> None:\n"
        '    op.drop_table("tags")\n'
    )
    await prepare_schema(db, versions_dir=newer)  # the new version's pod migrated
    older = await database_factory(migrate_on_start=False, schema=db.schema)
    check = await prepare_schema(older, versions_dir=VERSIONS)  # a pod of the old version
    assert (await schema_status(older, versions_dir=VERSIONS)).state == "ahead"
    await check()  # still ready during the rollout


def test_cli_settings_fall_back_to_the_service_data_dir() -> None:
    from saasfw.db.migrations._cli import settings_from_env

    assert settings_from_env({"SAASFW_DATA_DIR": "/srv/data"}).data_dir == Path("/srv/data")
    both = {"SAASFW_DATA_DIR": "/srv/data", "SAASFW_DB__DATA_DIR": "/srv/db"}
    assert settings_from_env(both).data_dir == Path("/srv/db")
    assert settings_from_env({}).data_dir == Path("var")
