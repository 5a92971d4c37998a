"""The one exception tree of saasfw.security.

Every error carries a stable ``code`` (machine readable, safe to return to a client) and a
message that says what was wrong and what to do. No error ever contains a token, a key, a
password or any other secret: messages name claims and settings, never their values.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "InvalidTokenError",
    "KeyUnavailableError",
    "MissingExtraError",
    "PermissionDeniedError",
    "SecurityError",
    "SecurityUnavailableError",
    "TenantMismatchError",
    "TokenReuseError",
    "TokenRevokedError",
    "WeakPasswordError",
]


class SecurityError(Exception):
    """Base of every error raised by saasfw.security.

    Attributes:
        code: a short dotted identifier such as ``token.expired``; safe to expose.
        status_code: the HTTP status a web layer should answer with.
    """

    code: str = "security.error"
    status_code: int = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        """The human readable message (never contains a secret)."""
        return str(self.args[0]) if self.args else ""


class ConfigurationError(SecurityError):
    """The security configuration is unusable (missing key, mixed key families, ...).

    Raised at construction time so a misconfigured service refuses to start instead of
    failing open later.
    """

    code = "security.configuration"
    status_code = 500


class MissingExtraError(ImportError, SecurityError):
    """An optional integration was used without its extra installed."""

    code = "security.missing_extra"
    status_code = 500

    def __init__(self, feature: str, extra: str) -> None:
        SecurityError.__init__(
            self,
            f"{feature} needs the optional dependency group: "
            f"pip install 'saasfw-security[{extra}]'",
        )
        self.extra = extra


class SecurityUnavailableError(SecurityError):
    """A security backend (revocation store, key store, session store) is unreachable.

    Fail closed: the request is refused with 503, never let through and never a 500.
    """

    code = "security.unavailable"
    status_code = 503


class AuthenticationError(SecurityError):
    """The request carries no credential, or one that does not verify (HTTP 401)."""

    code = "auth.failed"
    status_code = 401


class InvalidTokenError(AuthenticationError):
    """A bearer token failed verification (signature, claims, size, header)."""

    code = "token.invalid"


class TokenRevokedError(InvalidTokenError):
    """The token was revoked (logout, reuse detection, per-user not-before)."""

    code = "token.revoked"


class TokenReuseError(TokenRevokedError):
    """A refresh token was presented twice; its whole family has been revoked."""

    code = "token.reused"


class KeyUnavailableError(InvalidTokenError):
    """No trusted key can verify the token (unknown ``kid``, JWKS unreachable and uncached)."""

    code = "token.key_unavailable"


class PermissionDeniedError(SecurityError):
    """The principal is authenticated but lacks a permission (HTTP 403)."""

    code = "auth.forbidden"
    status_code = 403


class TenantMismatchError(PermissionDeniedError):
    """The principal belongs to another tenant than the resource (HTTP 403)."""

    code = "auth.tenant_mismatch"


class WeakPasswordError(SecurityError):
    """A new password does not meet the password policy (HTTP 422)."""

    code = "password.weak"
    status_code = 422
