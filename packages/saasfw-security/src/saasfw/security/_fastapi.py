"""FastAPI integration: ``require(...)`` dependencies, problem responses, the route check.

The dependencies are thin: all decisions live in the plain classes (:class:`JwtVerifier`,
:class:`ApiKeyService`, :class:`MtlsAuthenticator`, :class:`RbacPolicy`), so gRPC
interceptors and workers use the same code.

Each ``require(...)`` is one dependency reading the credentials from the request itself:
FastAPI charges every sub-dependency on every request (about a quarter of a hello
endpoint's own time each), so the security schemes are not sub-dependencies. They are
added to the OpenAPI document by :func:`install_security` instead, for the routes that
declare ``require(...)`` or ``optional_principal``, so ``/docs`` still shows them.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request, WebSocketException
from fastapi.responses import Response
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from saasfw.core import PROBLEM_CONTENT_TYPE, problem_bytes
from saasfw.security._apikeys import ApiKeyService
from saasfw.security._errors import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
    SecurityError,
    SecurityUnavailableError,
)
from saasfw.security._events import SecurityEvent, SecurityEvents, SecurityEventType
from saasfw.security._jwt_verify import JwtVerifier
from saasfw.security._mtls import MtlsAuthenticator
from saasfw.security._principal import (
    Principal,
    reset_current_principal,
    set_current_principal,
)
from saasfw.security._rbac import Permission, RbacPolicy, ensure_tenant
from saasfw.security._sessions import SessionManager

__all__ = [
    "Authenticator",
    "SecurityContextMiddleware",
    "SecurityHTTPException",
    "assert_routes_secured",
    "install_security",
    "optional_principal",
    "public",
    "require",
    "routes_without_security",
    "security_lifespan",
    "security_problem_handler",
]

_log = logging.getLogger("saasfw.security")
_STATE_KEY = "saasfw_security"
_MARKER = "__saasfw_security__"
# Well-known credential parameter names; values are also checked (API key prefix, JWT shape).
_QUERY_KEY_NAMES = frozenset({"api_key", "apikey", "api-key", "x-api-key", "access_token"})
_JWT_SHAPE = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
API_KEY_HEADER = "X-API-Key"

bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearerAuth")
api_key_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, scheme_name="apiKeyAuth")


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


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _same_origin(scope: Scope) -> bool:
    """Fetch-metadata / Origin check for cookie-authenticated unsafe requests."""
    headers: dict[bytes, str] = {
        bytes(k).lower(): bytes(v).decode("latin-1") for k, v in scope.get("headers", ())
    }
    site = headers.get(b"sec-fetch-site")
    if site is not None:
        return site in {"same-origin", "none"}
    origin = headers.get(b"origin")
    if origin is None:
        return True  # not sent by a browser page (browsers send Origin on unsafe requests)
    host = headers.get(b"host", "")
    scheme = str(scope.get("scheme", "https"))
    return origin == f"{scheme}://{host}"


def _address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


class Authenticator:
    """Turns request credentials into a :class:`Principal` and checks permissions.

    Credentials, in order: ``Authorization: Bearer`` (JWT), the API key header, the client
    certificate (mTLS). Presenting two kinds at once is refused as ambiguous. API keys in
    the query string are refused, never used.

    Args:
        jwt: verifier for bearer tokens (None: bearer tokens are refused).
        api_keys: API key service (None: API keys are refused).
        mtls: client-certificate authenticator (None: certificates are ignored).
        sessions: cookie sessions (None: session cookies are ignored). Unsafe methods
            authenticated by cookie must come from the same origin (CSRF defence).
        policy: RBAC policy; without one, only direct grants (token scopes) count.
        events: security-events port.
        api_key_header: header carrying API keys.
        realm: the ``WWW-Authenticate`` realm.
    """

    def __init__(
        self,
        *,
        jwt: JwtVerifier | None = None,
        api_keys: ApiKeyService | None = None,
        mtls: MtlsAuthenticator | None = None,
        sessions: SessionManager | None = None,
        policy: RbacPolicy | None = None,
        events: SecurityEvents | None = None,
        api_key_header: str = API_KEY_HEADER,
        realm: str = "api",
    ) -> None:
        if jwt is None and api_keys is None and mtls is None and sessions is None:
            raise ConfigurationError(
                "an Authenticator needs at least one of jwt, api_keys, mtls, sessions"
            )
        self.jwt = jwt
        self.sessions = sessions
        self.api_keys = api_keys
        self.mtls = mtls
        self.policy = policy or RbacPolicy()
        self.events = events or SecurityEvents()
        self.api_key_header = api_key_header.lower().encode("latin-1")
        self.realm = realm

    def _refuse_query_keys(self, scope: Scope) -> None:
        query = scope.get("query_string", b"")
        if not query:
            return
        from urllib.parse import parse_qsl

        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if (
                name.lower() in _QUERY_KEY_NAMES
                or (self.api_keys is not None and self.api_keys.looks_like_key(value))
                or _JWT_SHAPE.match(value)
            ):
                raise AuthenticationError(
                    "credentials are not accepted in the query string; use a header",
                    code="auth.credentials_in_query",
                )

    async def authenticate(self, scope: Scope) -> Principal | None:
        """Return the request's principal, None without credentials, or raise.

        Raises:
            AuthenticationError: credentials were presented and are not valid.
            SecurityUnavailableError: a store needed to decide is unreachable.
        """
        try:
            return await self._authenticate(scope)
        except SecurityError:
            raise
        except Exception as exc:
            # A store failing (database, Redis) refuses the request; it is never a 500.
            raise SecurityUnavailableError(
                f"an authentication store failed ({type(exc).__name__})"
            ) from None

    async def _authenticate(self, scope: Scope) -> Principal | None:
        self._refuse_query_keys(scope)
        bearer: str | None = None
        api_key: str | None = None
        for name, value in scope.get("headers", ()):
            lname = name.lower()
            if lname == b"authorization":
                if bearer is not None:
                    raise AuthenticationError(
                        "several Authorization headers", code="auth.ambiguous"
                    )
                scheme, _, credentials = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not credentials.strip():
                    raise AuthenticationError(
                        "only Bearer authorization is accepted", code="auth.scheme"
                    )
                bearer = credentials.strip()
            elif lname == self.api_key_header:
                if api_key is not None:
                    raise AuthenticationError("several API key headers", code="auth.ambiguous")
                api_key = value.decode("latin-1").strip()
        if bearer is not None and api_key is not None:
            raise AuthenticationError("present one credential, not several", code="auth.ambiguous")
        if bearer is not None:
            if self.jwt is None:
                raise AuthenticationError("bearer tokens are not accepted here", code="auth.scheme")
            return (await self.jwt.verify(bearer)).principal
        if api_key is not None:
            if self.api_keys is None:
                raise AuthenticationError("API keys are not accepted here", code="auth.scheme")
            return await self.api_keys.verify(api_key)
        if self.sessions is not None:
            session_id = self.sessions.session_id_from_scope(scope)
            if session_id is not None:
                return await self._session_principal(scope, self.sessions, session_id)
        if self.mtls is not None:
            return self.mtls.authenticate_scope(scope)
        return None

    @staticmethod
    async def _session_principal(
        scope: Scope, sessions: SessionManager, session_id: str
    ) -> Principal:
        if scope.get("method", "GET") not in _SAFE_METHODS and not _same_origin(scope):
            raise AuthenticationError(
                "cookie-authenticated changes must come from the same origin",
                code="session.cross_site",
            )
        session = await sessions.load(session_id)
        if session is None:
            raise AuthenticationError("the session has ended; log in again", code="session.ended")
        return Principal(
            id=session.user_id,
            kind="user",
            auth_method="session",
            tenant=session.tenant,
            roles=frozenset(session.roles),
        )

    async def principal_for(
        self,
        request: HTTPConnection,
        permissions: tuple[Permission, ...],
        tenant_param: str | None,
        *,
        required: bool = True,
    ) -> Principal | None:
        """Authenticate, authorize, publish events, and set the principal contextvar."""
        scope = request.scope
        try:
            principal = await self.authenticate(scope)
        except SecurityUnavailableError as exc:
            _log.warning("authentication backend unavailable: %s", exc.message)
            raise SecurityHTTPException(exc, realm=self.realm) from None
        except AuthenticationError as exc:
            self.events.publish(
                SecurityEvent(
                    type=SecurityEventType.AUTH_FAILED,
                    outcome="failure",
                    address=_address(scope),
                    details={"reason": exc.code, "path": scope.get("path", "")},
                )
            )
            raise SecurityHTTPException(exc, realm=self.realm) from None
        if principal is None:
            if not required:
                return None
            raise SecurityHTTPException(
                AuthenticationError("authentication is required", code="auth.required"),
                realm=self.realm,
            )
        try:
            if tenant_param is not None:
                ensure_tenant(principal, request.path_params.get(tenant_param))
            self.policy.check(principal, *permissions)
        except PermissionDeniedError as exc:
            self.events.publish(
                SecurityEvent(
                    type=SecurityEventType.ACCESS_DENIED,
                    outcome="denied",
                    principal_id=principal.id,
                    tenant=principal.tenant,
                    address=_address(scope),
                    details={
                        "reason": exc.code,
                        "permissions": [str(p) for p in permissions],
                        "path": scope.get("path", ""),
                    },
                )
            )
            raise SecurityHTTPException(exc, realm=self.realm) from None
        set_current_principal(principal)
        request.state.principal = principal
        if self.events.has_listeners:
            self.events.publish(
                SecurityEvent(
                    type=SecurityEventType.AUTH_SUCCEEDED,
                    outcome="success",
                    principal_id=principal.id,
                    tenant=principal.tenant,
                    address=_address(scope),
                    details={"method": principal.auth_method},
                )
            )
        return principal

    def require(
        self, *permissions: str, tenant_param: str | None = None
    ) -> Callable[..., Awaitable[Principal]]:
        """A dependency returning the principal holding every permission.

        Args:
            permissions: concrete ``resource:action`` permissions (validated now).
            tenant_param: path parameter naming the tenant of the resource; the principal
                must belong to exactly that tenant.
        """
        return _dependency(lambda _request: self, permissions, tenant_param)


def _parse_all(permissions: Iterable[str]) -> tuple[Permission, ...]:
    return tuple(Permission.parse(p) for p in permissions)


def _from_app(request: HTTPConnection) -> Authenticator:
    authenticator = getattr(request.app.state, _STATE_KEY, None)
    if not isinstance(authenticator, Authenticator):
        # Fail closed: a route declaring security must never run without it.
        raise SecurityHTTPException(
            ConfigurationError("install_security(app, authenticator) was not called")
        )
    return authenticator


async def _principal(
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


def _dependency(
    resolve: Callable[[HTTPConnection], Authenticator],
    permissions: Iterable[str],
    tenant_param: str | None,
) -> Callable[..., Awaitable[Principal]]:
    parsed = _parse_all(permissions)

    async def dependency(connection: HTTPConnection) -> Principal:
        principal = await _principal(connection, resolve, parsed, tenant_param, required=True)
        if principal is None:  # pragma: no cover - required=True never returns None
            raise SecurityHTTPException(AuthenticationError("authentication is required"))
        return principal

    setattr(dependency, _MARKER, tuple(str(p) for p in parsed))
    return dependency


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
    return _dependency(_from_app, permissions, tenant_param)


async def optional_principal(connection: HTTPConnection) -> Principal | None:
    """Dependency: the principal when credentials are present, None for anonymous callers.

    Presented-but-invalid credentials still get 401: a bad token is never silently
    downgraded to anonymous. Counts as declared security for the start-up route check.
    """
    return await _principal(connection, _from_app, (), None, required=False)


setattr(optional_principal, _MARKER, ("optional",))


async def public() -> None:
    """Marker dependency for routes that are deliberately unauthenticated.

    ``@app.get("/status", dependencies=[Depends(public)])`` keeps the route out of
    :func:`routes_without_security`.
    """


setattr(public, _MARKER, ("public",))


def _markers(dependant: Any) -> Iterator[tuple[str, ...]]:
    """The security markers (``require(...)``, ``optional_principal``, ``public``) in a
    dependant tree."""
    marker = getattr(getattr(dependant, "call", None), _MARKER, None)
    if marker is not None:
        yield marker
    for sub in getattr(dependant, "dependencies", ()):
        yield from _markers(sub)


def _route_entries(app: FastAPI) -> list[tuple[Any, Any]]:
    """(original route, effective route) pairs, with included routers flattened."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - FastAPI before lazy router inclusion
        return [(route, route) for route in app.routes]
    return [(ctx.original_route, ctx) for ctx in iter_route_contexts(app.routes)]


def _api_routes(app: FastAPI) -> Iterator[tuple[Any, Any, list[tuple[str, ...]]]]:
    """Each API route as (original, effective, its security markers); the markers include
    dependencies declared on ``include_router`` or on the router."""
    from fastapi.routing import APIRoute

    for original, effective in _route_entries(app):
        if not isinstance(original, APIRoute):
            continue
        dependant = getattr(effective, "dependant", None) or original.dependant
        markers = list(_markers(dependant))
        for dep in getattr(effective, "dependencies", None) or ():
            own = getattr(getattr(dep, "dependency", None), _MARKER, None)
            if own is not None:
                markers.append(own)
            markers.extend(_markers(getattr(dep, "dependant", None)))
        yield original, effective, markers


def routes_without_security(app: FastAPI) -> list[str]:
    """Routes (``"GET /path"``) with neither a ``require(...)`` nor the ``public`` marker.

    Included routers are flattened; dependencies declared on ``include_router`` or on the
    router count for each of its routes.
    """
    missing = []
    for original, effective, markers in _api_routes(app):
        if not markers:
            methods = getattr(effective, "methods", None) or original.methods or ()
            path = getattr(effective, "path", None) or original.path
            missing.append(f"{','.join(sorted(methods))} {path}")
    return missing


def _document_security_schemes(schema: dict[str, Any], app: FastAPI) -> None:
    """Add ``bearerAuth``/``apiKeyAuth`` to the operations of routes taking credentials
    (``require(...)`` or ``optional_principal``; ``public`` takes none)."""
    alternatives: list[dict[str, list[str]]] = [
        {bearer_scheme.scheme_name: []},
        {api_key_scheme.scheme_name: []},
    ]
    paths = schema.get("paths", {})
    documented = False
    for original, effective, markers in _api_routes(app):
        if all(marker == ("public",) for marker in markers):
            continue
        path = getattr(effective, "path_format", None) or original.path_format
        operations = paths.get(path, {})
        for method in getattr(effective, "methods", None) or original.methods or ():
            operation = operations.get(method.lower())
            if operation is not None and "security" not in operation:
                operation["security"] = [dict(a) for a in alternatives]
                documented = True
    if documented:
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        for scheme in (bearer_scheme, api_key_scheme):
            schemes.setdefault(
                scheme.scheme_name,
                scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True),
            )


def _install_openapi_security(app: FastAPI) -> None:
    generate = app.openapi
    if getattr(generate, _MARKER, False):
        return

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            schema = generate()
            _document_security_schemes(schema, app)
            app.openapi_schema = schema
        return app.openapi_schema

    setattr(openapi, _MARKER, True)
    app.openapi = openapi  # type: ignore[method-assign]


def assert_routes_secured(app: FastAPI) -> None:
    """Raise :class:`ConfigurationError` listing routes with no declared security."""
    missing = routes_without_security(app)
    if missing:
        raise ConfigurationError(
            "routes without declared security (add Depends(require(...)) or "
            "dependencies=[Depends(public)]): " + "; ".join(missing)
        )


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
    setattr(app.state, _STATE_KEY, authenticator)
    _install_openapi_security(app)
    if context:  # off when a SecurityMiddleware already resets the principal
        app.add_middleware(SecurityContextMiddleware)
    app.add_exception_handler(SecurityHTTPException, security_problem_handler)
    app.add_exception_handler(SecurityError, security_problem_handler)


@contextlib.asynccontextmanager
async def security_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan part that refuses to start while a route has no declared security."""
    assert_routes_secured(app)
    yield
