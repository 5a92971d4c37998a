"""Map driver and SQLAlchemy exceptions onto the saasfw.db error tree."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError

from saasfw.db._errors import (
    ConflictError,
    DatabaseError,
    DatabaseUnavailableError,
    DuplicateKeyError,
    SchemaMismatchError,
    StaleVersionError,
)
from saasfw.db._missing import missing_object

# PostgreSQL SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_PG_UNIQUE = "23505"
_PG_SERIALIZATION = {"40001", "40P01"}  # serialization failure, deadlock
_PG_UNAVAILABLE_CLASSES = ("08", "53", "57")  # connection, resources, operator intervention

_SQLITE_BUSY_SNAPSHOT = 517
_SQLITE_ERROR = 1  # the statement itself is wrong (syntax, unknown function): not an outage
_SQLITE_UNIQUE = {1555, 2067}  # SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE
_UNAVAILABLE = "The database is unavailable; retry later"


def _sqlstate(error: BaseException) -> str | None:
    orig = getattr(error, "orig", None)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def sqlite_error_code(error: BaseException | None) -> int | None:
    """The (extended) SQLite result code behind a DBAPI or SQLAlchemy error, if any."""
    orig = getattr(error, "orig", error)
    for candidate in (orig, getattr(orig, "__cause__", None)):
        if isinstance(candidate, sqlite3.Error):
            return getattr(candidate, "sqlite_errorcode", None)
    return None


def translate(error: BaseException) -> DatabaseError | None:
    """The saasfw.db error for ``error``, or None when it is not a database error.

    The result's message is ours; driver text (SQL, parameters, constraint values) never
    reaches it. Chain the original with ``raise translated from error``.
    """
    if isinstance(error, DatabaseError):
        return error
    if isinstance(error, StaleDataError):
        return StaleVersionError("the row was changed or deleted by someone else; re-read it")
    if isinstance(error, sa_exc.TimeoutError):
        return DatabaseUnavailableError("no database connection became free in time")
    if isinstance(error, sa_exc.IntegrityError):
        state = _sqlstate(error)
        code = sqlite_error_code(error)
        text = str(getattr(error, "orig", "")).upper()
        if state == _PG_UNIQUE or code in _SQLITE_UNIQUE or "UNIQUE CONSTRAINT" in text:
            return DuplicateKeyError("a row with the same unique key already exists")
        return ConflictError("the write violates a database constraint")
    if isinstance(error, sa_exc.DBAPIError):
        state = _sqlstate(error)
        missing = missing_object(error)
        if missing is not None:
            # Before the OperationalError rule below: on SQLite a missing table is an
            # OperationalError too, but a deploy fault, not an outage to wait out.
            return SchemaMismatchError(missing.kind, missing.name)
        sqlite_code = sqlite_error_code(error)
        if state in _PG_SERIALIZATION or sqlite_code == _SQLITE_BUSY_SNAPSHOT:
            return ConflictError("a concurrent transaction changed the data; retry")
        if sqlite_code == _SQLITE_ERROR and not error.connection_invalidated:
            return DatabaseError("the database rejected the statement")
        if error.connection_invalidated or isinstance(
            error, sa_exc.OperationalError | sa_exc.InterfaceError
        ):
            return DatabaseUnavailableError(_UNAVAILABLE)
        if state is not None and state.startswith(_PG_UNAVAILABLE_CLASSES):
            return DatabaseUnavailableError(_UNAVAILABLE)
        return DatabaseError("the database rejected the statement")
    if isinstance(error, ConnectionError | TimeoutError):
        return DatabaseUnavailableError(_UNAVAILABLE)
    return None


@contextmanager
def translating() -> Iterator[None]:
    """Re-raise database errors raised inside the block as saasfw.db errors."""
    try:
        yield
    except DatabaseError:
        raise
    except Exception as error:
        translated = translate(error)
        if translated is None:
            raise
        raise translated from error
