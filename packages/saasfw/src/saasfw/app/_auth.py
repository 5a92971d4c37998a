"""Wiring saasfw.security: authenticator, token issuer, passwords and the rate limiter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from saasfw.app._inject import Provided
from saasfw.app._settings import ServiceSettings
from saasfw.security import (
    ApiKeyService,
    Authenticator,
    ConfigurationError,
    MemoryApiKeyStore,
    MemoryRevocationStore,
    PasswordHasher,
    RateLimiter,
    RbacPolicy,
    RedisRevocationStore,
    RevocationStore,
    SecurityEvents,
    SqlApiKeyStore,
    TokenIssuer,
    TrustedProxies,
    build_authenticator,
    build_password_hasher,
)

__all__ = [
    "AuthComponents",
    "auth_components",
    "build_auth",
    "build_rate_limiter",
    "security_events",
    "trusted_proxies",
]

security_events: Provided[SecurityEvents] = Provided("security_events")
"""The security-events port of the service (subscribe listeners to it)."""


@dataclass(frozen=True, slots=True)
class AuthComponents:
    """Everything authentication needs, built once per application.

    Attributes:
        events: the security-events port (the audit listener is subscribed to it).
        authenticator: what ``require(...)`` uses (JWT, API keys, mTLS, sessions, RBAC).
        issuer: signs this service's access and refresh tokens (None: tokens off).
        passwords: argon2id hashing with the configured cost.
        revocation: where token rotation, logout and not-before state lives.
    """

    events: SecurityEvents
    authenticator: Authenticator
    issuer: TokenIssuer | None
    passwords: PasswordHasher
    revocation: RevocationStore

    @property
    def api_keys(self) -> ApiKeyService | None:
        """The API-key service, when peppers are configured."""
        return self.authenticator.api_keys

    @property
    def policy(self) -> RbacPolicy:
        """The RBAC policy."""
        return self.authenticator.policy


auth_components: Provided[AuthComponents] = Provided("auth")
"""Issuer, passwords, API keys, policy and authenticator as one dependency."""


def trusted_proxies(settings: ServiceSettings) -> TrustedProxies:
    """The reverse proxies whose forwarded headers count (none by default)."""
    return TrustedProxies(settings.http.trusted_proxies)


def _revocation(settings: ServiceSettings) -> RevocationStore:
    url = settings.security.redis_url
    if url is None:
        return MemoryRevocationStore()
    prefix = settings.redis_prefix or settings.service
    return RedisRevocationStore.from_url(url.get_secret_value(), prefix=f"{prefix}:revocation:")


def _issuer(
    settings: ServiceSettings, revocation: RevocationStore, events: SecurityEvents
) -> TokenIssuer | None:
    tokens = settings.tokens
    jwt = settings.security.jwt
    if not tokens.enabled:
        return None
    if jwt.issuer is None or not jwt.audiences:
        raise ConfigurationError("issuing tokens needs security.jwt.issuer and audiences")
    if tokens.algorithm == "HS256":
        if jwt.hmac_secret is None:
            raise ConfigurationError(
                "tokens.algorithm is HS256: set security.jwt.hmac_secret "
                "(SAASFW_SECURITY__JWT__HMAC_SECRET or its _FILE)"
            )
        signing_key: Any = jwt.hmac_secret.get_secret_value()
    else:
        if tokens.signing_key_file is None:
            raise ConfigurationError(
                f"tokens.algorithm is {tokens.algorithm}: set signing_key_file"
            )
        signing_key = tokens.signing_key_file
    return TokenIssuer(
        algorithm=tokens.algorithm,
        signing_key=signing_key,
        issuer=jwt.issuer,
        audience=jwt.audiences[0],
        revocation=revocation,
        access_ttl=tokens.access_ttl,
        refresh_ttl=tokens.refresh_ttl,
        key_id=tokens.key_id,
        events=events,
        leeway=jwt.leeway,
    )


def build_auth(
    settings: ServiceSettings, *, engine: Any | None, events: SecurityEvents | None = None
) -> AuthComponents:
    """Build the authenticator, token issuer and password hasher from effective settings.

    Args:
        settings: effective settings (see ``effective_settings``).
        engine: the service's SQLAlchemy ``AsyncEngine`` for the ``api_keys`` table, or None
            to keep API keys in memory (lost at restart).
        events: the security-events port (default: a new one).
    """
    events = events or SecurityEvents()
    revocation = _revocation(settings)
    store = SqlApiKeyStore(engine) if engine is not None else MemoryApiKeyStore()
    authenticator = build_authenticator(
        settings.security, events=events, revocation=revocation, api_key_store=store
    )
    return AuthComponents(
        events=events,
        authenticator=authenticator,
        issuer=_issuer(settings, revocation, events),
        passwords=build_password_hasher(settings.security.passwords),
        revocation=revocation,
    )


def build_rate_limiter(
    settings: ServiceSettings, events: SecurityEvents | None, *, enabled: bool = True
) -> RateLimiter:
    """The limiter of ``security.rate_limit`` (Redis when ``redis_url`` is set).

    With ``enabled=False`` every check passes and nothing is stored (no Redis connection).
    """
    limits = settings.security.rate_limit
    if not enabled:
        limits = limits.model_copy(update={"enabled": False, "storage_url": SecretStr("memory://")})
    return RateLimiter(limits, proxies=trusted_proxies(settings), events=events)
