"""Wiring saasfw.security: authenticator, token issuer, passwords and the rate limiter."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError

from saasfw.app._fleet import revocation_backend
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
    SqlRevocationStore,
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
    "start_revocation",
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


def _revocation(
    settings: ServiceSettings, engine: Any | None, schema: str | None
) -> RevocationStore:
    """Redis when ``redis_url`` is set, else the service's own database, else memory.

    The production rules refuse the memory store (a restart would bring logged-out tokens
    back); the database store is the default wherever the database component is on.
    """
    backend = revocation_backend(settings)
    url = settings.security.redis_url
    if backend == "redis" and url is not None:
        prefix = settings.redis_prefix or settings.service
        return RedisRevocationStore.from_url(url.get_secret_value(), prefix=f"{prefix}:revocation:")
    if backend == "database" and engine is not None:
        return SqlRevocationStore(
            engine, schema=schema, application_name=f"{settings.service}-revocation"[:63]
        )
    return MemoryRevocationStore()


async def start_revocation(revocation: RevocationStore) -> None:
    """Create the database store's tables if missing, then start its invalidation listener.

    Replicas starting together may race on ``CREATE TABLE``: the loser finds the tables
    the winner made on its second look.
    """
    if not isinstance(revocation, SqlRevocationStore):
        return
    try:
        await revocation.create_tables()
    except DBAPIError:
        await asyncio.sleep(0.2)
        await revocation.create_tables()
    await revocation.start()


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
    settings: ServiceSettings,
    *,
    engine: Any | None,
    schema: str | None = None,
    events: SecurityEvents | None = None,
) -> AuthComponents:
    """Build the authenticator, token issuer and password hasher from effective settings.

    Args:
        settings: effective settings (see ``effective_settings``).
        engine: the service's SQLAlchemy ``AsyncEngine`` for the ``api_keys`` table and the
            revocation store, or None to keep both in memory (lost at restart).
        schema: the service's PostgreSQL schema (None: the connection's search path).
        events: the security-events port (default: a new one).
    """
    events = events or SecurityEvents()
    revocation = _revocation(settings, engine, schema)
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
