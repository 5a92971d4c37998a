"""RFC 9457 problem details: every error leaves the service as a problem, by saasfw-core.

The handlers never echo request input (a 422 lists locations and messages, not values)
and never a stack trace: an unexpected exception becomes a bare 500 problem carrying only
the correlation id, so an operator can find the logged traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import Field
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saasfw.app._part import Part
from saasfw.core import (
    PROBLEM_CONTENT_TYPE,
    CorrelationIdProvider,
    ProblemDetails,
    problem_bytes,
    send_problem,
    use_correlation_id,
)
from saasfw.observability import get_correlation_id

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "Problem",
    "ProblemResponse",
    "install_problem_handlers",
    "problem_response",
    "problem_responses",
    "wire_problems",
]

_log = logging.getLogger("saasfw.app.errors")


class Problem(ProblemDetails):
    """The RFC 9457 body (saasfw-core's one dialect); ``errors`` details a 422 answer."""

    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Field-level validation errors (422 only)"
    )


class ProblemResponse(Response):
    """A response with the problem media type (its body written by saasfw-core)."""

    media_type = PROBLEM_CONTENT_TYPE


def _no_correlation_id() -> str | None:
    return None


def problem_response(
    status: int,
    *,
    detail: str | None = None,
    title: str | None = None,
    code: str | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    correlation_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """Build one problem+json response (no body for statuses that forbid one)."""
    if status < 200 or status in (204, 304):
        return Response(status_code=status, headers=dict(headers or {}))
    body = problem_bytes(
        status,
        code=code,
        title=title,
        detail=detail,
        instance=instance,
        correlation_id=correlation_id,
        extra=extra,
    )
    return ProblemResponse(body, status_code=status, headers=dict(headers or {}))


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem+json answers for ``statuses``."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        try:
            description = HTTPStatus(status).phrase
        except ValueError:
            description = "Error"
        out[status] = {
            "model": Problem,
            "description": description,
            "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    return out


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Location, message and type only: the offending input may be a secret.
    return [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "msg": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed_methods(request: Request) -> str:
    """Every method some route of the app takes at this path, for a 405's ``Allow``.

    Asked of the routes through Starlette's public ``matches`` (a method the path takes
    matches fully), so included and nested routers answer for themselves.
    """
    routes = request.app.router.routes
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


def install_problem_handlers(
    app: FastAPI, *, correlation_id: CorrelationIdProvider = _no_correlation_id
) -> None:
    """Register problem+json handlers for HTTP errors, validation errors and the unexpected."""

    async def on_http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        raw = exc.detail if isinstance(exc, HTTPException) else None
        code = getattr(exc, "code", None)  # set by saasfw-security's refusals
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        if status == 405:
            # Starlette names the methods of the first route on the path only.
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return problem_response(
            status,
            code=code if isinstance(code, str) else None,
            detail=raw if isinstance(raw, str) else None,
            instance=request.url.path,
            headers=headers,
            correlation_id=correlation_id(),
        )

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        errors = _validation_errors(exc) if isinstance(exc, RequestValidationError) else []
        return problem_response(
            422,
            detail="The request is not valid: see errors.",
            instance=request.url.path,
            correlation_id=correlation_id(),
            extra={"errors": errors},
        )

    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)


class UnhandledErrorMiddleware:
    """Pure ASGI: an exception no handler took becomes a 500 problem, never a stack trace.

    It sits inside the observability middleware, so the 500 is counted, traced and logged
    with the request's correlation id, and the body carries that id for the operator.
    """

    def __init__(
        self, app: ASGIApp, *, correlation_id: CorrelationIdProvider = _no_correlation_id
    ) -> None:
        self.app = app
        self._correlation_id = correlation_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            cid = self._correlation_id()
            _log.error(
                "unhandled %s on %s %s (correlation id %s)",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
                cid,
                exc_info=exc,
            )
            if started:
                raise  # too late for a problem body; the server closes the connection
            await send_problem(
                scope,
                send,
                500,
                detail="The server failed to handle this request.",
                correlation_id=cid,
            )


def wire_problems(enabled: bool) -> Part[None] | None:
    """Problem answers as a part: handlers for HTTP and validation errors, and a last-resort
    500 inside the observability middleware (so it is counted, traced and logged).

    Every problem body, whichever package writes it, carries the request's correlation id
    (saasfw-core's writer asks saasfw.observability for it).
    """
    use_correlation_id(get_correlation_id)
    if not enabled:
        return None

    def handlers(app: FastAPI) -> None:
        install_problem_handlers(app, correlation_id=get_correlation_id)

    def middleware(app: FastAPI) -> None:
        app.add_middleware(UnhandledErrorMiddleware, correlation_id=get_correlation_id)

    return Part(
        "problems",
        None,
        setup=(handlers,),
        middleware={"problems": middleware},
        responses=(400, 422, 500),
    )
