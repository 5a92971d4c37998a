"""The principal dependency: one FastAPI dependency per ``require(...)``, resolving the principal.

Each dependency reads the credentials from the request itself: FastAPI charges every
sub-dependency on every request (about a quarter of a hello endpoint's own time each), so
the security schemes are not sub-dependencies (:mod:`saasfw.security._openapi` documents
them instead). Every dependency carries a marker attribute naming what it declares, which
the start-up route check and the OpenAPI document read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from fastapi import WebSocketException
from starlette.requests import HTTPConnection

from saasfw.security._errors import AuthenticationError
from saasfw.security._http_errors import SecurityHTTPException
from saasfw.security._principal import Principal
from saasfw.security._rbac import Permission

if TYPE_CHECKING:
    from saasfw.security._authenticator import Authenticator

__all__ = ["MARKER", "principal_dependency", "resolve_principal"]

# The attribute naming the security a dependency declares (see saasfw.security._routecheck).
MARKER = "__saasfw_security__"


def _parse_all(permissions: Iterable[str]) -> tuple[Permission, ...]:
    return tuple(Permission.parse(p) for p in permissions)


async def resolve_principal(
    connection: HTTPConnection,
    resolve: Callable[[HTTPConnection], Authenticator],
    permissions: tuple[Permission, ...],
    tenant_param: str | None,
    *,
    required: bool,
) -> Principal | None:
    try:
        return await resolve(connection).principal_for(
            connection, permissions, tenant_param, required=required
        )
    except SecurityHTTPException as exc:
        if connection.scope["type"] != "websocket":
            raise
        # WebSockets have no 401/403: refuse the handshake with a close code instead.
        code = 1013 if exc.status_code == 503 else 1008  # try again later / policy
        raise WebSocketException(code=code, reason=exc.error.code) from None


def principal_dependency(
    resolve: Callable[[HTTPConnection], Authenticator],
    permissions: Iterable[str],
    tenant_param: str | None,
) -> Callable[..., Awaitable[Principal]]:
    parsed = _parse_all(permissions)

    async def dependency(connection: HTTPConnection) -> Principal:
        principal = await resolve_principal(
            connection, resolve, parsed, tenant_param, required=True
        )
        if principal is None:  # pragma: no cover - required=True never returns None
            raise SecurityHTTPException(AuthenticationError("authentication is required"))
        return principal

    setattr(dependency, MARKER, tuple(str(p) for p in parsed))
    return dependency
