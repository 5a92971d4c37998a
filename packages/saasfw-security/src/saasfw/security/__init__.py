"""saasfw.security: see this distribution's README for what it owns."""

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
from saasfw.security._principal import (
    AuthMethod,
    Principal,
    PrincipalKind,
    get_current_principal,
    principal_scope,
    reset_current_principal,
    set_current_principal,
)
from saasfw.security._version import __version__

__all__ = [
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
