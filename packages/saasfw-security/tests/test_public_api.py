"""The public faces of saasfw.security are pinned: the package face and its submodules."""

import importlib
import tomllib
from pathlib import Path

import pytest

import saasfw.security

FACE = [
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

SUBMODULES = {
    "saasfw.security.tokens": [
        "CachedRevocationStore",
        "ClaimsMapping",
        "JwksKeySet",
        "JwtVerifier",
        "KeySet",
        "KeyUnavailableError",
        "MemoryRevocationStore",
        "RedisRevocationStore",
        "RevocationStore",
        "SqlRevocationStore",
        "StaticKeySet",
        "SubjectDirectory",
        "SubjectRevocation",
        "SubjectState",
        "TokenIssuer",
        "TokenPair",
        "VerificationKey",
        "VerifiedToken",
    ],
    "saasfw.security.credentials": [
        "ApiKeyRecord",
        "ApiKeyService",
        "ApiKeyStore",
        "ClientCertificateVerifier",
        "CreatedApiKey",
        "ForwardedCertificateSource",
        "MemoryApiKeyStore",
        "MemorySessionStore",
        "MtlsAuthenticator",
        "MtlsIdentity",
        "PasswordCheck",
        "PasswordHasher",
        "PasswordPolicy",
        "RedisSessionStore",
        "Session",
        "SessionManager",
        "SessionStore",
        "SqlApiKeyStore",
        "parse_api_key",
        "pbkdf2_sha256_verifier",
    ],
    "saasfw.security.ratelimit": [
        "RateLimit",
        "RateLimitDecision",
        "RateLimitExceeded",
        "RateLimitMetrics",
        "RateLimitMiddleware",
        "RateLimitPolicy",
        "RateLimitSettings",
        "RateLimitStorageUnavailable",
        "RateLimiter",
        "install_rate_limiter",
        "rate_limit_production_problems",
    ],
    "saasfw.security.settings": [
        "ApiKeySettings",
        "CorsSettings",
        "JwtSettings",
        "MtlsSettings",
        "PasswordSettings",
        "RateLimitSettings",
        "RbacSettings",
        "RequestLimitsSettings",
        "SecurityHeadersSettings",
        "SecuritySettings",
        "SessionSettings",
        "build_authenticator",
        "build_jwt_verifier",
        "build_password_hasher",
        "build_rbac_policy",
        "security_production_problems",
    ],
    "saasfw.security.advanced": [
        "AuthMethod",
        "Authenticator",
        "CorsMiddleware",
        "MissingExtraError",
        "Permission",
        "PrincipalKind",
        "RequestLimitsMiddleware",
        "Role",
        "SecurityContextMiddleware",
        "SecurityEvent",
        "SecurityEventListener",
        "SecurityEventType",
        "SecurityEvents",
        "SecurityHTTPException",
        "SecurityHeadersMiddleware",
        "SecurityMiddleware",
        "TrustedProxies",
        "assert_routes_secured",
        "install_security",
        "reset_current_principal",
        "routes_without_security",
        "security_lifespan",
        "security_problem_handler",
        "set_current_principal",
    ],
}

# The old face (0.2.x) had 107 names; each one is still public, from a submodule.
OLD_FACE_SIZE = 107


def test_face_is_pinned_sorted_and_small() -> None:
    assert saasfw.security.__all__ == sorted(saasfw.security.__all__)
    assert saasfw.security.__all__ == FACE
    assert len(FACE) <= 50


@pytest.mark.parametrize("module", sorted(SUBMODULES))
def test_submodule_faces_are_pinned_and_resolve(module: str) -> None:
    imported = importlib.import_module(module)
    assert imported.__all__ == sorted(imported.__all__)
    assert imported.__all__ == SUBMODULES[module]
    for name in imported.__all__:
        assert getattr(imported, name) is not None


def test_face_names_are_the_same_objects_in_their_topic_module() -> None:
    for module, names in SUBMODULES.items():
        imported = importlib.import_module(module)
        for name in set(names) & set(FACE):
            assert getattr(imported, name) is getattr(saasfw.security, name), (module, name)


def test_no_public_name_was_lost_in_the_trim() -> None:
    public = set(FACE) | {name for names in SUBMODULES.values() for name in names}
    assert len(public) == OLD_FACE_SIZE


def test_every_public_name_resolves() -> None:
    for name in saasfw.security.__all__:
        assert getattr(saasfw.security, name) is not None


def test_version_comes_from_distribution_metadata() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert saasfw.security.__version__ == project["project"]["version"]
