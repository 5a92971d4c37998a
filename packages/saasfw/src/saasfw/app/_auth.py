"""Wiring saasfw.security: authenticator, token issuer, passwords and the rate limiter."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr

from saasfw.app._effective import effective_for
from saasfw.app._fleet import revocation_backend
from saasfw.app._inject import Provided
from saasfw.app._part import Installer, Part
from saasfw.app._ratelimit_metrics import register_rate_limit_metrics
from saasfw.app._settings import ServiceSettings
from saasfw.config import ProductionRule, RuleContext, Violation
from saasfw.security import (
    ApiKeyService,
    Authenticator,
    ConfigurationError,
    JwksKeySet,
    MemoryApiKeyStore,
    MemoryRevocationStore,
    PasswordHasher,
    RateLimiter,
    RbacPolicy,
    RedisRevocationStore,
    SecurityEvents,
    SecurityMiddleware,
    SqlApiKeyStore,
    SqlRevocationStore,
    TokenIssuer,
    TrustedProxies,
    install_security,
)
from saasfw.security.advanced import assert_routes_secured
from saasfw.security.ratelimit import install_rate_limiter
from saasfw.security.settings import (
    build_authenticator,
    build_password_hasher,
    security_production_problems,
)
from saasfw.security.tokens import RevocationStore

__all__ = [
    "AuthComponents",
    "auth_components",
    "build_auth",
    "build_rate_limiter",
    "security_events",
    "security_rules",
    "start_revocation",
    "trusted_proxies",
    "wire_security",
]

_log = logging.getLogger("saasfw.app")

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
    """Create the database store's tables if missing, then start the store's listener.

    Replicas starting together take turns on the tables' advisory lock. The SQL and Redis
    stores then keep an in-process copy current (NOTIFY, PUBLISH) and read the shared store
    only while that copy is not trusted.
    """
    if isinstance(revocation, SqlRevocationStore):
        await revocation.create_tables()
    if isinstance(revocation, SqlRevocationStore | RedisRevocationStore):
        await revocation.start()


def _issuer(
    settings: ServiceSettings, revocation: RevocationStore, events: SecurityEvents
) -> TokenIssuer | None:
    tokens = settings.security.tokens
    jwt = settings.security.jwt
    if not tokens.enabled:
        return None
    if jwt.issuer is None or not jwt.audiences:
        raise ConfigurationError("issuing tokens needs security.jwt.issuer and audiences")
    if tokens.algorithm == "HS256":
        if jwt.hmac_secret is None:
            raise ConfigurationError(
                "security.tokens.algorithm is HS256: set security.jwt.hmac_secret "
                "(SAASFW_SECURITY__JWT__HMAC_SECRET or its _FILE)"
            )
        signing_key: Any = jwt.hmac_secret.get_secret_value()
    else:
        if tokens.signing_key_file is None:
            raise ConfigurationError(
                f"security.tokens.algorithm is {tokens.algorithm}: "
                "set security.tokens.signing_key_file"
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
        settings: effective settings (see ``runtime_settings``).
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


def _jwks_of(auth: AuthComponents | None) -> JwksKeySet | None:
    verifier = auth.authenticator.jwt if auth is not None else None
    keys = getattr(verifier, "keys", None)
    return keys if isinstance(keys, JwksKeySet) else None


async def _close_all(closers: list[tuple[str, Callable[[], Awaitable[Any]]]]) -> None:
    """Close each resource within 2 seconds; a failure is logged, never blocks the rest."""
    for name, close in closers:
        try:
            async with asyncio.timeout(2.0):
                await close()
        except Exception as exc:
            _log.warning("closing %s at shutdown failed (%s)", name, type(exc).__name__)


def _security_lifespan(
    settings: ServiceSettings, auth: AuthComponents | None, limiter: RateLimiter
) -> Callable[[FastAPI], Any]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        closers: list[tuple[str, Callable[[], Awaitable[Any]]]] = [("rate_limiter", limiter.aclose)]
        if auth is not None:
            if settings.components.route_security_check:
                assert_routes_secured(app)
            await start_revocation(auth.revocation)
            closer = getattr(auth.revocation, "aclose", None)
            if closer is not None:
                closers.append(("revocation", closer))
        jwks = _jwks_of(auth)
        if jwks is not None:
            try:
                await jwks.refresh()
            except Exception as exc:  # keep serving: tokens fail closed until keys arrive
                _log.error(
                    "JWKS unreachable at start-up (%s); bearer tokens fail until it answers",
                    type(exc).__name__,
                )
            closers.append(("jwks", jwks.aclose))
        yield
        await _close_all(list(reversed(closers)))

    return lifespan


def _middleware(
    settings: ServiceSettings, auth: AuthComponents | None, limiter: RateLimiter, limiting: bool
) -> dict[str, Installer]:
    switches = settings.components

    def authentication(app: FastAPI) -> None:
        if auth is not None:
            # The security context is part of the one security layer below.
            install_security(app, auth.authenticator, context=False)

    def rate_limit(app: FastAPI) -> None:
        install_rate_limiter(app, limiter)

    def security(app: FastAPI) -> None:
        # Security headers, CORS, request size limits, the global rate limit and the
        # security context: one pure ASGI layer.
        app.add_middleware(
            SecurityMiddleware,
            headers=settings.security.headers if switches.security_headers else None,
            proxies=trusted_proxies(settings),
            cors=settings.security.cors if switches.security_headers else None,
            limits=settings.security.request_limits if switches.request_limits else None,
            limiter=limiter if limiting else None,
            security_context=auth is not None,
        )

    return {"authentication": authentication, "rate_limit": rate_limit, "security": security}


def wire_security(
    settings: ServiceSettings,
    *,
    auth: AuthComponents | None = None,
    rate_limiter: RateLimiter | None = None,
    engine: Any | None = None,
    schema: str | None = None,
    audit: Any | None = None,
    metrics_registry: Any | None = None,
) -> Part[AuthComponents | None]:
    """Authentication (when on), the rate limiter and the one security layer, as a part.

    There is always a limiter, so routes declaring ``RateLimit(...)`` keep working; switched
    off it passes every check and stores nothing. The audit logger, when given, hears every
    security event.
    """
    switches = settings.components
    if switches.authentication and auth is None:
        auth = build_auth(settings, engine=engine, schema=schema)
    elif not switches.authentication:
        auth = None
    if auth is not None and audit is not None:
        from saasfw.audit import security_events_listener

        auth.events.subscribe(security_events_listener(audit))
    limiting = switches.rate_limiting and settings.security.rate_limit.enabled
    limiter = rate_limiter or build_rate_limiter(
        settings, auth.events if auth is not None else None, enabled=limiting
    )
    checks: tuple[Any, ...] = ()
    limits = settings.security.rate_limit
    if limiting and not limits.uses_memory_storage:
        store = "rate_limit_postgres" if limits.uses_postgres_storage else "redis"
        checks = ((store, limiter.health_check, None),)
    if limiting and metrics_registry is not None:
        register_rate_limit_metrics(metrics_registry, limiter)
    responses = [401, 403] if auth is not None else []
    responses += [413, 431] if switches.request_limits else []
    responses += [429] if limiting else []
    provides: tuple[Any, ...] = ()
    if auth is not None:
        provides = ((auth_components, auth), (security_events, auth.events))
    return Part(
        "security",
        auth,
        provides=provides,
        lifespan=_security_lifespan(settings, auth, limiter),
        budget=7.0,
        checks=checks,
        middleware=_middleware(settings, auth, limiter, limiting),
        responses=tuple(responses),
    )


_LEADING_SETTING = re.compile(r"^(security(?:\.[a-z_]+)+)\b")


def _named_setting(message: str) -> str:
    """The setting a package's plain message starts with, so the report can give its source.

    saasfw-security phrases its findings as ``security.jwt.jwks_url must use https://``.
    """
    match = _LEADING_SETTING.match(message)
    return match.group(1) if match else "security"


def _rule(settings: Any, context: RuleContext) -> Iterator[str | Violation]:
    effective = effective_for(settings, context)
    if effective is None or not effective.components.authentication:
        return
    # Per-process state is judged by the fleet rule, with the deployment's instance count.
    for message in security_production_problems(effective.security, workers=1):
        yield Violation("security", message, _named_setting(message))
    tokens = effective.security.tokens
    jwt = effective.security.jwt
    if tokens.enabled and tokens.algorithm == "HS256" and jwt.hmac_secret is None:
        yield Violation(
            "security",
            "tokens are issued with HS256 but no signing secret is set "
            "(SAASFW_SECURITY__JWT__HMAC_SECRET, or a secret file)",
            "security.jwt.hmac_secret",
        )
    if tokens.enabled and tokens.algorithm != "HS256" and tokens.signing_key_file is None:
        yield Violation(
            "security",
            f"tokens are issued with {tokens.algorithm} but no private key file is set",
            "security.tokens.signing_key_file",
        )


def security_rules() -> list[ProductionRule]:
    """saasfw.security's production checks on the effective settings."""
    return [
        ProductionRule(
            "security",
            _rule,
            description="authentication, token signing and rate-limit storage are safe",
        )
    ]
