"""Wiring saasfw.security's authentication: token issuer, API keys, RBAC, one Authenticator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from saasfw.app._inject import Provided
from saasfw.app._settings import ServiceSettings
from saasfw.security import (
    ApiKeyService,
    Authenticator,
    ConfigurationError,
    MemoryApiKeyStore,
    MemoryRevocationStore,
    RbacPolicy,
    RedisRevocationStore,
    RevocationStore,
    SecurityEvents,
    SqlApiKeyStore,
    TokenIssuer,
)

__all__ = ["AuthComponents", "auth_components", "build_auth", "security_events"]

security_events: Provided[SecurityEvents] = Provided("security_events")
"""The security-events port of the service (subscribe listeners to it)."""


@dataclass(frozen=True, slots=True)
class AuthComponents:
    """Everything authentication needs, built once per application."""

    events: SecurityEvents
    issuer: TokenIssuer
    api_keys: ApiKeyService | None
    policy: RbacPolicy
    authenticator: Authenticator
    revocation: RevocationStore


auth_components: Provided[AuthComponents] = Provided("auth")
"""Issuer, API-key service, policy and authenticator as one dependency."""


def _revocation(settings: ServiceSettings) -> RevocationStore:
    if settings.redis_url is None:
        return MemoryRevocationStore()
    prefix = settings.redis_prefix or settings.service
    return RedisRevocationStore.from_url(
        settings.redis_url.get_secret_value(), prefix=f"{prefix}:revocation:"
    )


def _policy(settings: ServiceSettings) -> RbacPolicy:
    roles = {
        name: {"permissions": list(role.permissions), "inherits": list(role.inherits)}
        for name, role in settings.auth.roles.items()
    }
    return RbacPolicy.from_mapping({"roles": roles})


def build_auth(
    settings: ServiceSettings, *, engine: Any | None, events: SecurityEvents | None = None
) -> AuthComponents:
    """Build the issuer (and its verifier), the API-key service and the authenticator.

    Args:
        settings: effective settings (secrets present; see ``effective_settings``).
        engine: the service's SQLAlchemy ``AsyncEngine`` for the API-key table, or None to
            keep API keys in memory (they are then lost at restart).
        events: the security-events port (default: a new one).
    """
    auth = settings.auth
    jwt = auth.jwt
    events = events or SecurityEvents()
    if jwt.algorithm == "HS256":
        if jwt.secret is None:
            raise ConfigurationError(
                "auth.jwt.secret is required (SAASFW_AUTH__JWT__SECRET or a secret file)"
            )
        signing_key: Any = jwt.secret.get_secret_value()
    else:
        if jwt.private_key_file is None:
            raise ConfigurationError(f"auth.jwt.private_key_file is required for {jwt.algorithm}")
        signing_key = jwt.private_key_file
    revocation = _revocation(settings)
    issuer = TokenIssuer(
        algorithm=jwt.algorithm,
        signing_key=signing_key,
        issuer=jwt.issuer or settings.service,
        audience=jwt.audience or settings.service,
        revocation=revocation,
        access_ttl=jwt.access_ttl,
        refresh_ttl=jwt.refresh_ttl,
        key_id=jwt.key_id,
        events=events,
    )
    api_keys: ApiKeyService | None = None
    keys = auth.api_keys
    if keys.enabled:
        if not keys.peppers or keys.current_pepper is None:
            raise ConfigurationError(
                "auth.api_keys needs peppers and current_pepper (or api_keys.enabled=false)"
            )
        store = SqlApiKeyStore(engine) if engine is not None else MemoryApiKeyStore()
        api_keys = ApiKeyService(
            store,
            peppers=keys.peppers,
            current_pepper=keys.current_pepper,
            prefix=keys.prefix,
            events=events,
        )
    policy = _policy(settings)
    authenticator = Authenticator(
        jwt=issuer.verifier, api_keys=api_keys, policy=policy, events=events, realm=settings.service
    )
    return AuthComponents(events, issuer, api_keys, policy, authenticator, revocation)
