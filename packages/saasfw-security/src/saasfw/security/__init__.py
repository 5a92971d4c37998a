"""saasfw.security: authentication, authorization, tokens and rate limits for a service.

This face holds what a service author uses (47 names): declaring routes, the principal,
the errors to catch, the settings, and the components and stores to choose between.
Everything else public lives in a documented submodule, by topic:

- ``saasfw.security.tokens``: JWT keys and claims, revocation ports, subjects;
- ``saasfw.security.credentials``: API keys, sessions, passwords, mTLS;
- ``saasfw.security.ratelimit``: rate-limit decisions, metrics, middleware;
- ``saasfw.security.settings``: every settings section and the ``build_*`` functions;
- ``saasfw.security.advanced``: hand wiring (middleware one by one, context variables,
  event types, route checks);
- ``saasfw.security.grpc``: gRPC server security (``[grpc]`` extra).

``import saasfw.security`` never imports redis, SQLAlchemy, argon2 or PyYAML.
"""

from saasfw.security._apikeys import ApiKeyService, MemoryApiKeyStore
from saasfw.security._apikeys_sql import SqlApiKeyStore
from saasfw.security._authenticator import Authenticator
from saasfw.security._errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidTokenError,
    PermissionDeniedError,
    SecurityError,
    SecurityUnavailableError,
    TenantMismatchError,
    TokenReuseError,
    TokenRevokedError,
    WeakPasswordError,
)
from saasfw.security._events import SecurityEvents
from saasfw.security._fastapi import install_security
from saasfw.security._jwt_issue import TokenIssuer, TokenPair
from saasfw.security._jwt_keys import JwksKeySet, StaticKeySet
from saasfw.security._jwt_verify import JwtVerifier
from saasfw.security._passwords import PasswordHasher
from saasfw.security._principal import Principal, get_current_principal, principal_scope
from saasfw.security._proxies import TrustedProxies
from saasfw.security._ratelimit import (
    RateLimiter,
    RateLimitExceeded,
    RateLimitPolicy,
    RateLimitSettings,
)
from saasfw.security._ratelimit_asgi import RateLimit
from saasfw.security._rbac import RbacPolicy, ensure_tenant
from saasfw.security._require import optional_principal, public, require
from saasfw.security._revocation import MemoryRevocationStore
from saasfw.security._revocation_redis import RedisRevocationStore
from saasfw.security._revocation_sql import SqlRevocationStore
from saasfw.security._routecheck import security_lifespan
from saasfw.security._sessions import MemorySessionStore, SessionManager
from saasfw.security._sessions_redis import RedisSessionStore
from saasfw.security._settings import SecuritySettings
from saasfw.security._stack import SecurityMiddleware
from saasfw.security._subjects import SubjectState
from saasfw.security._version import __version__

__all__ = [
    "ApiKeyService",
    "AuthenticationError",
    "Authenticator",
    "ConfigurationError",
    "InvalidTokenError",
    "JwksKeySet",
    "JwtVerifier",
    "MemoryApiKeyStore",
    "MemoryRevocationStore",
    "MemorySessionStore",
    "PasswordHasher",
    "PermissionDeniedError",
    "Principal",
    "RateLimit",
    "RateLimitExceeded",
    "RateLimitPolicy",
    "RateLimitSettings",
    "RateLimiter",
    "RbacPolicy",
    "RedisRevocationStore",
    "RedisSessionStore",
    "SecurityError",
    "SecurityEvents",
    "SecurityMiddleware",
    "SecuritySettings",
    "SecurityUnavailableError",
    "SessionManager",
    "SqlApiKeyStore",
    "SqlRevocationStore",
    "StaticKeySet",
    "SubjectState",
    "TenantMismatchError",
    "TokenIssuer",
    "TokenPair",
    "TokenReuseError",
    "TokenRevokedError",
    "TrustedProxies",
    "WeakPasswordError",
    "__version__",
    "ensure_tenant",
    "get_current_principal",
    "install_security",
    "optional_principal",
    "principal_scope",
    "public",
    "require",
    "security_lifespan",
]
