"""A missing table or column is a schema mismatch (500, the fix named), not an outage (503).

On real SQLite and PostgreSQL: the same typed error and the same problem text on both
backends, one statement (no retry), one log line without SQL, parameters or traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import String, event, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from saasfw.db import (
    Database,
    DatabaseError,
    DatabaseUnavailableError,
    Repository,
    SchemaMismatchError,
    install_exception_handlers,
)
from saasfw.db._translate import translate
from saasfw.db.migrations import MIGRATE_COMMAND, migration_config

DatabaseFactory = Callable[..., Awaitable[Database]]
VERSIONS = Path(__file__).parent / "migrations" / "versions"
PARAMETER = "s3cr3t-parameter-value"


class Model(DeclarativeBase):
    pass


class Widget(Model):
    """A model whose table nobody created."""

    __tablename__ = "widgets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class Note(Model):
    """The notes table of the test revisions: ``pinned`` arrives in revision 0002."""

    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(200))
    pinned: Mapped[bool] = mapped_column(default=False)


class WidgetRepository(Repository[Widget]):
    model = Widget


def expected_detail(kind: str, name: str) -> str:
    return (
        f'The database has no {kind} "{name}": its schema does not match this code. '
        f"Run the service's migrations: {MIGRATE_COMMAND}"
    )


def count_statements(db: Database, needle: str) -> list[str]:
    """Every statement naming ``needle`` that reaches the driver (a retry would add one)."""
    seen: list[str] = []

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _count(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if needle in statement:
            seen.append(statement)

    return seen


async def test_missing_table_is_a_typed_schema_mismatch(database_factory: DatabaseFactory) -> None:
    db = await database_factory()
    statements = count_statements(db, "widgets")
    with pytest.raises(SchemaMismatchError) as info:
        async with db.unit_of_work() as uow:
            await WidgetRepository(uow.session).list()
    error = info.value
    assert (error.kind, error.name, error.command) == ("table", "widgets", MIGRATE_COMMAND)
    assert error.status == 500
    assert error.code == "db.schema_mismatch"
    assert not isinstance(error, DatabaseUnavailableError)
    assert str(error) == expected_detail("table", "widgets")
    assert len(statements) == 1  # asked once, never retried


async def test_missing_column_names_table_and_column(database_factory: DatabaseFactory) -> None:
    db = await database_factory()
    config = migration_config(db.settings, service=db.service, versions_dir=VERSIONS)
    from alembic import command

    await asyncio.to_thread(command.upgrade, config, "0001")  # notes without "pinned"
    async with db.engine.connect() as connection:
        with pytest.raises(DBAPIError) as info:
            await connection.execute(select(Note).where(Note.body == PARAMETER))
    error = translate(info.value)
    assert isinstance(error, SchemaMismatchError)
    assert (error.kind, error.name) == ("column", "notes.pinned")
    assert PARAMETER not in str(error)


async def test_other_statement_errors_are_not_schema_errors_nor_outages(
    database_factory: DatabaseFactory,
) -> None:
    db = await database_factory()
    async with db.engine.connect() as connection:
        with pytest.raises(DBAPIError) as info:
            await connection.execute(text("SELEC 1"))
    error = translate(info.value)
    # A syntax error is the code's fault: a 500, not "unavailable; retry later" (SQLite
    # raised it as OperationalError, like an outage).
    assert type(error) is DatabaseError
    assert error.status == 500


async def test_problem_response_names_the_table_and_the_command_once(
    database_factory: DatabaseFactory, caplog: pytest.LogCaptureFixture
) -> None:
    db = await database_factory()
    statements = count_statements(db, "widgets")
    app = FastAPI()
    install_exception_handlers(app)

    @app.get("/widgets")
    async def widgets() -> list[str]:
        async with db.unit_of_work() as uow:
            rows = await uow.session.scalars(select(Widget).where(Widget.name == PARAMETER))
            return [row.name for row in rows]

    caplog.set_level(logging.DEBUG, logger="saasfw.db")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/widgets")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "retry-after" not in response.headers
    body = response.json()
    assert body["code"] == "db.schema_mismatch"
    assert body["detail"] == expected_detail("table", "widgets")  # same on both backends
    assert len(statements) == 1
    records = [r for r in caplog.records if r.name.startswith("saasfw.db")]
    assert len(records) == 1
    (record,) = records
    assert record.exc_info is None
    assert record.stack_info is None
    line = record.getMessage()
    assert "widgets" in line
    assert MIGRATE_COMMAND in line
    assert PARAMETER not in caplog.text
    assert "SELECT" not in caplog.text


def test_an_unnamed_missing_object_still_reads_well() -> None:
    # A localized or unusual driver message: the name is left out, never guessed.
    assert str(SchemaMismatchError("column", None)) == (
        "The database lacks a column this code uses: its schema does not match this code. "
        f"Run the service's migrations: {MIGRATE_COMMAND}"
    )


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("SELECT * FROM widgets", ("table", "widgets")),
        ("INSERT INTO t (nope) VALUES (1)", ("column", "t.nope")),
        ("SELECT nope FROM t", ("column", "nope")),
        ('SELECT * FROM "w; DROP TABLE t"', ("table", None)),  # not a bare identifier: dropped
        ("SELEC 1", None),
    ],
)
def test_sqlite_messages_are_read_for_a_bare_name_only(
    statement: str, expected: tuple[str, str | None] | None
) -> None:
    import sqlite3

    from saasfw.db._missing import missing_object

    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (id int)")
    with pytest.raises(sqlite3.OperationalError) as info:
        connection.execute(statement)
    connection.close()
    found = missing_object(info.value)
    assert (None if found is None else (found.kind, found.name)) == expected
