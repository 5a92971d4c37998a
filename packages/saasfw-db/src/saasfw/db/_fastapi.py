"""FastAPI integration: problem+json exception handlers and the paging query dependency."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError

from saasfw.core import PROBLEM_CONTENT_TYPE, problem_bytes
from saasfw.db._errors import DatabaseError, DatabaseUnavailableError, SchemaMismatchError
from saasfw.db._translate import translate

logger = logging.getLogger("saasfw.db")

_GENERIC_DETAIL = {
    500: "The request failed because of a database error",
    503: "The database is unavailable; retry later",
}


def problem_response(error: DatabaseError, instance: str | None = None) -> Response:
    """An RFC 9457 problem response for ``error`` (no driver text, ever), by saasfw-core."""
    # 5xx details could reveal internals; only client errors explain themselves, and a
    # schema mismatch, whose detail is built from a bare identifier and the fix.
    public = error.status < 500 or isinstance(error, SchemaMismatchError)
    detail = error.detail if public else _GENERIC_DETAIL.get(error.status, error.detail)
    body = problem_bytes(
        error.status, code=error.code, title=error.title, detail=detail, instance=instance
    )
    headers = {"Retry-After": "1"} if isinstance(error, DatabaseUnavailableError) else None
    return Response(
        body, status_code=error.status, media_type=PROBLEM_CONTENT_TYPE, headers=headers
    )


async def _database_error_handler(request: Request, exc: Exception) -> Response:
    error = exc if isinstance(exc, DatabaseError) else translate(exc)
    if error is None:  # pragma: no cover - only registered for database errors
        error = DatabaseError("unexpected database error")
    if isinstance(error, SchemaMismatchError):
        # One line, no traceback: frame locals hold the SQL and its parameters, and the
        # cause is fully known (a deploy that skipped its migrations).
        logger.error(
            "database schema mismatch: %s %s is missing; run the migrations: %s",
            error.kind,
            error.name or "(unnamed)",
            error.command,
            extra={"code": error.code},
        )
    elif error.status >= 500:
        logger.error(
            "database error answered with %s",
            error.status,
            exc_info=exc,
            extra={"code": error.code},
        )
    return problem_response(error, instance=request.url.path)


def install_exception_handlers(app: FastAPI) -> None:
    """Answer saasfw.db errors (and raw SQLAlchemy errors) as problem+json.

    404 not found, 409 conflict / duplicate key / stale version, 503 unavailable (with
    ``Retry-After``), 400 invalid query, 500 schema mismatch (naming the missing table or
    column and the migration command), 500 otherwise; the detail never includes driver text.
    """
    app.add_exception_handler(DatabaseError, _database_error_handler)
    app.add_exception_handler(SQLAlchemyError, _database_error_handler)


@dataclass(frozen=True, slots=True)
class PageQuery:
    """Raw paging query parameters, validated later by ``Repository.*_request`` (no SQL).

    They are taken as unconstrained strings on purpose: hostile values (negative, huge,
    malformed, over-long) then get this package's 400 problem response, not a 422.
    """

    limit: str | None = None
    cursor: str | None = None
    offset: str | None = None
    sort: str | None = None


def page_query(
    limit: Annotated[str | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
    offset: Annotated[str | None, Query()] = None,
    sort: Annotated[str | None, Query()] = None,
) -> PageQuery:
    """FastAPI dependency collecting ``limit``, ``cursor``, ``offset`` and ``sort``."""
    return PageQuery(limit=limit, cursor=cursor, offset=offset, sort=sort)
