"""Security errors as HTTP answers: the exception dependencies raise and its problem+json handler.

:class:`SecurityHTTPException` carries the :class:`SecurityError` behind a 401/403/503 with
the ``WWW-Authenticate`` or ``Retry-After`` header it calls for; the handler renders it as
an RFC 9457 problem response written by saasfw-core.
"""

from __future__ import annotations

import logging

from fastapi import HTTPException, Request
from fastapi.responses import Response

from saasfw.core import PROBLEM_CONTENT_TYPE, problem_bytes
from saasfw.security._errors import SecurityError

__all__ = ["SecurityHTTPException", "security_problem_handler"]

_log = logging.getLogger("saasfw.security")


class SecurityHTTPException(HTTPException):
    """An HTTPException carrying the :class:`SecurityError` it came from.

    Works with FastAPI's default handler; :func:`install_security` renders it as
    RFC 9457 problem responses, written by saasfw-core.
    """

    def __init__(self, error: SecurityError, *, realm: str = "api") -> None:
        headers: dict[str, str] = {}
        if error.status_code == 401:
            challenge = f'Bearer realm="{realm}"'
            if error.code not in {"auth.required"}:
                challenge += ', error="invalid_token"'
            headers["WWW-Authenticate"] = challenge
        elif error.status_code == 403:
            headers["WWW-Authenticate"] = f'Bearer realm="{realm}", error="insufficient_scope"'
        elif error.status_code == 503:
            headers["Retry-After"] = "5"
        super().__init__(status_code=error.status_code, detail=error.message, headers=headers)
        self.error = error


_TITLES = {
    401: "Unauthorized",
    403: "Forbidden",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}


async def security_problem_handler(request: Request, exc: Exception) -> Response:
    """Render a :class:`SecurityHTTPException` or :class:`SecurityError` as problem+json."""
    if isinstance(exc, SecurityHTTPException):
        error, headers = exc.error, dict(exc.headers or {})
    elif isinstance(exc, SecurityError):
        error, headers = exc, {}
    else:  # pragma: no cover - registered for these two types only
        raise exc
    status = error.status_code
    if status == 503:
        detail = "authentication is temporarily unavailable; retry later"
    elif status >= 500:
        _log.error("security configuration error: %s", error.message)
        detail = "the service's security configuration is broken"
    else:
        detail = error.message
    body = problem_bytes(
        status,
        code=error.code,
        title=_TITLES.get(status, "Error"),
        detail=detail,
        instance=request.url.path,
    )
    return Response(body, status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)
