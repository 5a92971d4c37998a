import saasfw.security

EXPECTED = [
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


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.security.__all__ == sorted(saasfw.security.__all__)
    assert saasfw.security.__all__ == EXPECTED


def test_every_public_name_resolves() -> None:
    for name in saasfw.security.__all__:
        assert getattr(saasfw.security, name) is not None


def test_version_comes_from_distribution_metadata() -> None:
    assert saasfw.security.__version__ == "0.1.0"
