"""saasfw.security.settings: every settings model of the security section, and its builders.

``SecuritySettings`` (and ``RateLimitSettings``) are also on ``saasfw.security``; the
per-section models, the ``build_*`` functions that turn them into components and the
production rule are here.
"""

from saasfw.security._cors import CorsSettings
from saasfw.security._headers import SecurityHeadersSettings
from saasfw.security._limits import RequestLimitsSettings
from saasfw.security._ratelimit import RateLimitSettings
from saasfw.security._settings import (
    ApiKeySettings,
    JwtSettings,
    MtlsSettings,
    PasswordSettings,
    RbacSettings,
    SecuritySettings,
    SessionSettings,
    build_authenticator,
    build_jwt_verifier,
    build_password_hasher,
    build_rbac_policy,
    security_production_problems,
)

__all__ = [
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
]
