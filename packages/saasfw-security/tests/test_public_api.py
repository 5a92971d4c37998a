import saasfw.security

EXPECTED = [
    "AuthMethod",
    "AuthenticationError",
    "ConfigurationError",
    "InvalidTokenError",
    "KeyUnavailableError",
    "MissingExtraError",
    "PermissionDeniedError",
    "Principal",
    "PrincipalKind",
    "SecurityError",
    "SecurityEvent",
    "SecurityEventListener",
    "SecurityEventType",
    "SecurityEvents",
    "TenantMismatchError",
    "TokenReuseError",
    "TokenRevokedError",
    "WeakPasswordError",
    "__version__",
    "get_current_principal",
    "principal_scope",
    "reset_current_principal",
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
