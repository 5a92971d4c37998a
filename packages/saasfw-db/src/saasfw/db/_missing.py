"""Recognise a missing table or column in a SQLite or PostgreSQL error and name it.

Both backends say the same thing differently: SQLite raises ``OperationalError`` ("no such
table: x"), which would otherwise read as an outage, PostgreSQL ``UndefinedTable`` /
``UndefinedColumn`` (SQLSTATE 42P01 / 42703). Only the missing object's name is kept, and
only when it is a plain identifier: the rest of the driver text (SQL, parameters) never
leaves this module.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Literal

MissingKind = Literal["table", "column"]

_PG_UNDEFINED_TABLE = "42P01"
_PG_UNDEFINED_COLUMN = "42703"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_$][A-Za-z0-9_$. -]{0,127}$")

_SQLITE = (
    re.compile(r"no such table: (?P<table>[^\n]+)"),
    re.compile(r"table (?P<table>\S+) has no column named (?P<column>[^\n]+)"),
    re.compile(r"no such column: (?P<column>[^\n]+)"),
)
_POSTGRES: dict[str, tuple[re.Pattern[str], ...]] = {
    _PG_UNDEFINED_TABLE: (re.compile(r'^relation "(?P<table>[^"]+)" does not exist'),),
    _PG_UNDEFINED_COLUMN: (
        re.compile(r'^column "(?P<column>[^"]+)" of relation "(?P<table>[^"]+)" does not exist'),
        re.compile(r'^column "?(?P<column>[^"\s]+)"? does not exist'),
    ),
}


@dataclass(frozen=True, slots=True)
class MissingObject:
    """What the database lacks: a ``table`` or a ``column`` (``table.column`` when known)."""

    kind: MissingKind
    name: str | None


def _driver_errors(error: BaseException) -> list[BaseException]:
    orig = getattr(error, "orig", None) or error
    found = [orig]
    cause = getattr(orig, "__cause__", None)
    if cause is not None:
        found.append(cause)
    return found


def _sqlstate(candidates: list[BaseException]) -> str | None:
    for candidate in candidates:
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _name(match: re.Match[str]) -> str | None:
    groups = match.groupdict()
    table, column = groups.get("table"), groups.get("column")
    name = f"{table}.{column}" if table and column else (table or column or "")
    name = name.strip()
    return name if _SAFE_NAME.fullmatch(name) else None


def _first_match(
    text: str, patterns: tuple[re.Pattern[str], ...]
) -> tuple[MissingKind, str | None] | None:
    for pattern in patterns:
        match = pattern.search(text)
        if match is not None:
            kind: MissingKind = "column" if match.groupdict().get("column") else "table"
            return kind, _name(match)
    return None


def missing_object(error: BaseException) -> MissingObject | None:
    """The table or column whose absence caused ``error``, or None for any other error."""
    candidates = _driver_errors(error)
    state = _sqlstate(candidates)
    if state in _POSTGRES:
        kind: MissingKind = "table" if state == _PG_UNDEFINED_TABLE else "column"
        for candidate in candidates:
            # The message alone: asyncpg's str() is it; SQLAlchemy's wrapper prefixes the class.
            message = str(candidate).rpartition(">: ")[2]
            found = _first_match(message, _POSTGRES[state])
            if found is not None:
                return MissingObject(kind, found[1])
        return MissingObject(kind, None)
    if state is not None:
        return None
    for candidate in candidates:
        if isinstance(candidate, sqlite3.OperationalError):
            found = _first_match(str(candidate), _SQLITE)
            if found is not None:
                return MissingObject(*found)
    return None
