"""The Authenticator: request credentials to a :class:`Principal`, then the permission check.

The decisions live in the plain classes (:class:`JwtVerifier`, :class:`ApiKeyService`,
:class:`MtlsAuthenticator`, :class:`RbacPolicy`), so gRPC interceptors and workers use the
same code; this class reads the credentials from an ASGI scope, picks the one presented,
publishes the security events and answers refusals as :class:`SecurityHTTPException`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection
from starlette.types import Scope

from saasfw.security._apikeys import ApiKeyService
from saasfw.security._dependency import principal_dependency
from saasfw.security._errors import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
    SecurityError,
    SecurityUnavailableError,
)
from saasfw.security._events import SecurityEvent, SecurityEvents, SecurityEventType
from saasfw.security._http_errors import SecurityHTTPException
from saasfw.security._jwt_verify import JwtVerifier
from saasfw.security._mtls import MtlsAuthenticator
from saasfw.security._principal import Principal, set_current_principal
from saasfw.security._rbac import Permission, RbacPolicy, ensure_tenant
from saasfw.security._sessions import SessionManager

__all__ = ["API_KEY_HEADER", "Authenticator"]

_log = logging.getLogger("saasfw.security")
# Well-known credential parameter names; values are also checked (API key prefix, JWT shape).
_QUERY_KEY_NAMES = frozenset({"api_key", "apikey", "api-key", "x-api-key", "access_token"})
_JWT_SHAPE = re.compile(r"^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
API_KEY_HEADER = "X-API-Key"


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
        return principal_dependency(lambda _request: self, permissions, tenant_param)
