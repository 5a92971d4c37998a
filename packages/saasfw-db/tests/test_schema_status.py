"""Check-only: the schema is behind, at head or ahead of the scripts (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from alembic import command

from saasfw.db import Database, DatabaseUnavailableError, SchemaBehindError
from saasfw.db.migrations import (
    SchemaVersionCheck,
    main,
    migration_config,
    schema_status,
    upgrade_to_head,
)
from saasfw.db.migrations._status import classify

DatabaseFactory = Callable[..., Awaitable[Database]]
VERSIONS = Path(__file__).parent / "migrations" / "versions"

NEWER_REVISION = '''"""a newer release's revision (unknown to the older code)

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("tags", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("tags")
'''


async def upgrade(db: Database, versions: Path, revision: str) -> None:
    config = migration_config(db.settings, service=db.service, versions_dir=versions)
    # Alembic runs its own event loop: a thread, as a service does at start-up.
    await asyncio.to_thread(command.upgrade, config, revision)


async def test_behind_at_head_and_ahead(database_factory: DatabaseFactory, tmp_path: Path) -> None:
    db = await database_factory()
    check = SchemaVersionCheck(db, versions_dir=VERSIONS)

    empty = await check.status()
    assert (empty.state, empty.current, empty.heads, empty.ready) == (
        "behind",
        (),
        ("0002",),
        False,
    )
    with pytest.raises(SchemaBehindError, match="behind this code") as info:
        await check()
    assert isinstance(info.value, DatabaseUnavailableError)  # readiness: 503-like, not ready

    await upgrade(db, VERSIONS, "0001")
    partial = await check.status()
    assert (partial.state, partial.current) == ("behind", ("0001",))
    with pytest.raises(SchemaBehindError):
        await check()

    await upgrade(db, VERSIONS, "head")
    current = await check.status()
    assert (current.state, current.current, current.ready) == ("at_head", ("0002",), True)
    await check()  # ready

    # A newer release migrated the database; this (older) pod must stay ready.
    newer = tmp_path / "newer_versions"
    shutil.copytree(VERSIONS, newer, ignore=shutil.ignore_patterns("__pycache__"))
    (newer / "rev_0003_tags.py").write_text(NEWER_REVISION)
    await upgrade(db, newer, "head")
    ahead = await check.status()
    assert (ahead.state, ahead.current, ahead.heads, ahead.ready) == (
        "ahead",
        ("0003",),
        ("0002",),
        True,
    )
    await check()  # still ready
    assert (await schema_status(db, versions_dir=newer)).state == "at_head"


async def test_upgrade_to_head_helper_works_on_both_backends(
    database_factory: DatabaseFactory,
) -> None:
    db = await database_factory()
    for _ in range(2):  # the second run finds the schema at head and does nothing
        await asyncio.to_thread(
            upgrade_to_head, db.settings, service=db.service, versions_dir=VERSIONS
        )
        assert (await schema_status(db, versions_dir=VERSIONS)).state == "at_head"


@pytest.mark.parametrize(
    ("current", "heads", "expected"),
    [
        ((), ("b",), "behind"),  # empty database
        (("a",), ("b",), "behind"),
        (("b",), ("b",), "at_head"),
        (("x",), ("b",), "ahead"),  # a revision of a newer release
        (("b", "x"), ("b", "c"), "ahead"),
        (("b",), ("b", "c"), "behind"),  # one branch not applied yet
        (("b", "c"), ("b", "c"), "at_head"),
    ],
)
def test_classify(current: tuple[str, ...], heads: tuple[str, ...], expected: str) -> None:
    assert classify(current, heads, frozenset({"a", "b", "c"})) == expected


def test_cli_check_exits_1_when_behind_and_0_at_head(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAASFW_DB__DATA_DIR", str(tmp_path / "var"))
    base = ["--service", "svc", "--versions", str(VERSIONS)]
    assert main([*base, "check"]) == 1
    assert capsys.readouterr().out.startswith("behind: database at (none), scripts at 0002")
    assert main([*base, "upgrade"]) == 0
    assert main([*base, "check"]) == 0
    assert "at_head: database at 0002" in capsys.readouterr().out
