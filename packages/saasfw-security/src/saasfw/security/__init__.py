"""saasfw.security: see this distribution's README for what it owns."""

from saasfw.security._apikeys import (
    ApiKeyRecord,
    ApiKeyService,
    ApiKeyStore,
    CreatedApiKey,
    MemoryApiKeyStore,
    parse_api_key,
)
from saasfw.security._apikeys_sql import SqlApiKeyStore
from saasfw.security._errors import (
    AuthenticationError,
    ConfigurationError,
    InvalidTokenError,
    KeyUnavailableError,
    MissingExtraError,
    PermissionDeniedError,
    SecurityError,
    TenantMismatchError,
    TokenReuseError,
    TokenRevokedError,
    WeakPasswordError,
)
from saasfw.security._events import (
    SecurityEvent,
    SecurityEventListener,
    SecurityEvents,
    SecurityEventType,
)
from saasfw.security._fastapi import (
    Authenticator,
    SecurityContextMiddleware,
    SecurityHTTPException,
    assert_routes_secured,
    install_security,
    public,
    require,
    routes_without_security,
    security_lifespan,
    security_problem_handler,
)
from saasfw.security._jwt_issue import TokenIssuer, TokenPair
from saasfw.security._jwt_keys import JwksKeySet, KeySet, StaticKeySet, VerificationKey
from saasfw.security._jwt_verify import ClaimsMapping, JwtVerifier, VerifiedToken
from saasfw.security._mtls import (
    ClientCertificateVerifier,
    ForwardedCertificateSource,
    MtlsAuthenticator,
    MtlsIdentity,
)
from saasfw.security._passwords import (
    PasswordCheck,
    PasswordHasher,
    PasswordPolicy,
    pbkdf2_sha256_verifier,
)
from saasfw.security._principal import (
    AuthMethod,
    Principal,
    PrincipalKind,
    get_current_principal,
    principal_scope,
    reset_current_principal,
    set_current_principal,
)
from saasfw.security._rbac import Permission, RbacPolicy, Role, ensure_tenant
from saasfw.security._revocation import MemoryRevocationStore, RevocationStore
from saasfw.security._revocation_redis import RedisRevocationStore
from saasfw.security._sessions import MemorySessionStore, Session, SessionManager, SessionStore
from saasfw.security._sessions_redis import RedisSessionStore
from saasfw.security._version import __version__

__all__ = [
    "ApiKeyRecord",
    "ApiKeyService",
    "ApiKeyStore",
    "AuthMethod",
    "AuthenticationError",
    "Authenticator",
    "ClaimsMapping",
    "ClientCertificateVerifier",
    "ConfigurationError",
    "CreatedApiKey",
    "ForwardedCertificateSource",
    "InvalidTokenError",
    "JwksKeySet",
    "JwtVerifier",
    "KeySet",
    "KeyUnavailableError",
    "MemoryApiKeyStore",
    "MemoryRevocationStore",
    "MemorySessionStore",
    "MissingExtraError",
    "MtlsAuthenticator",
    "MtlsIdentity",
    "PasswordCheck",
    "PasswordHasher",
    "PasswordPolicy",
    "Permission",
    "PermissionDeniedError",
    "Principal",
    "PrincipalKind",
    "RbacPolicy",
    "RedisRevocationStore",
    "RedisSessionStore",
    "RevocationStore",
    "Role",
    "SecurityContextMiddleware",
    "SecurityError",
    "SecurityEvent",
    "SecurityEventListener",
    "SecurityEventType",
    "SecurityEvents",
    "SecurityHTTPException",
    "Session",
    "SessionManager",
    "SessionStore",
    "SqlApiKeyStore",
    "StaticKeySet",
    "TenantMismatchError",
    "TokenIssuer",
    "TokenPair",
    "TokenReuseError",
    "TokenRevokedError",
    "VerificationKey",
    "VerifiedToken",
    "WeakPasswordError",
    "__version__",
    "assert_routes_secured",
    "ensure_tenant",
    "get_current_principal",
    "install_security",
    "parse_api_key",
    "pbkdf2_sha256_verifier",
    "principal_scope",
    "public",
    "require",
    "reset_current_principal",
    "routes_without_security",
    "security_lifespan",
    "security_problem_handler",
    "set_current_principal",
]
