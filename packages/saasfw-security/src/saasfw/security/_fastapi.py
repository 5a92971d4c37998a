"""Wiring security into a FastAPI app: :func:`install_security` and the per-request context reset.

``install_security`` puts the :class:`Authenticator` where ``require(...)`` finds it, adds
the security schemes to the OpenAPI document, the problem+json handlers and
:class:`SecurityContextMiddleware`, which leaves no principal behind a request. The parts
live in their own modules: :mod:`._authenticator`, :mod:`._dependency`, :mod:`._require`,
:mod:`._routecheck`, :mod:`._openapi`, :mod:`._http_errors`.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from saasfw.security._authenticator import Authenticator
from saasfw.security._errors import SecurityError
from saasfw.security._http_errors import SecurityHTTPException, security_problem_handler
from saasfw.security._openapi import install_openapi_security
from saasfw.security._principal import reset_current_principal, set_current_principal
from saasfw.security._require import STATE_KEY

__all__ = ["SecurityContextMiddleware", "install_security"]


class SecurityContextMiddleware:
    """Pure ASGI: each request starts with no principal and leaves none behind.

    Whatever a dependency sets during the request is reset when the request ends, so a
    principal can never leak into the next request handled by the same task or thread.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        token = set_current_principal(None)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_current_principal(token)


def install_security(app: FastAPI, authenticator: Authenticator, *, context: bool = True) -> None:
    """Wire an authenticator into an app: ``require(...)``, problem responses, context.

    The OpenAPI document then lists the bearer and API-key schemes on every operation
    whose route takes credentials (``require(...)``, ``optional_principal``).

    Call before the app starts. Use :func:`security_lifespan` or
    :func:`assert_routes_secured` to refuse to start with unsecured routes.
    """
    setattr(app.state, STATE_KEY, authenticator)
    install_openapi_security(app)
    if context:  # off when a SecurityMiddleware already resets the principal
        app.add_middleware(SecurityContextMiddleware)
    app.add_exception_handler(SecurityHTTPException, security_problem_handler)
    app.add_exception_handler(SecurityError, security_problem_handler)
