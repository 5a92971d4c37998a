"""The app-level dependencies: ``require(...)``, ``optional_principal`` and ``public``.

``require(...)`` and ``optional_principal`` use the :class:`Authenticator` that
:func:`install_security` put in the app's state, and refuse the request (fail closed) when
there is none; ``public`` marks a route as deliberately unauthenticated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection

from saasfw.security._authenticator import Authenticator
from saasfw.security._dependency import MARKER, principal_dependency, resolve_principal
from saasfw.security._errors import ConfigurationError
from saasfw.security._http_errors import SecurityHTTPException
from saasfw.security._principal import Principal

__all__ = ["STATE_KEY", "optional_principal", "public", "require"]

# Where install_security keeps the app's Authenticator (app.state).
STATE_KEY = "saasfw_security"


def _from_app(request: HTTPConnection) -> Authenticator:
    authenticator = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(authenticator, Authenticator):
        # Fail closed: a route declaring security must never run without it.
        raise SecurityHTTPException(
            ConfigurationError("install_security(app, authenticator) was not called")
        )
    return authenticator


def require(
    *permissions: str, tenant_param: str | None = None
) -> Callable[..., Awaitable[Principal]]:
    """Dependency: the authenticated principal holding every ``permission``.

    Uses the :class:`Authenticator` installed with :func:`install_security`. Answers 401
    with ``WWW-Authenticate`` without valid credentials, 403 without the permission; on a
    WebSocket route the handshake is refused with close code 1008 (1013 when a store is
    unreachable)::

        @app.post("/orders")
        async def create(p: Annotated[Principal, Depends(require("orders:write"))]): ...
    """
    return principal_dependency(_from_app, permissions, tenant_param)


async def optional_principal(connection: HTTPConnection) -> Principal | None:
    """Dependency: the principal when credentials are present, None for anonymous callers.

    Presented-but-invalid credentials still get 401: a bad token is never silently
    downgraded to anonymous. Counts as declared security for the start-up route check.
    """
    return await resolve_principal(connection, _from_app, (), None, required=False)


setattr(optional_principal, MARKER, ("optional",))


async def public() -> None:
    """Marker dependency for routes that are deliberately unauthenticated.

    ``@app.get("/status", dependencies=[Depends(public)])`` keeps the route out of
    :func:`routes_without_security`.
    """


setattr(public, MARKER, ("public",))
