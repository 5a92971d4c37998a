"""``SecuritySettings``: the security section of a service's settings, and builders.

Each sub-model is a pydantic ``BaseModel`` with safe defaults; secrets are ``SecretStr``.
``saasfw.config`` (or any loader) fills it from ``SAASFW_SECURITY__*``; the ``build_*``
functions turn it into the plain objects. Nothing here fails open: a section that is not
configured builds nothing, and ``build_authenticator`` refuses to build with no method.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from saasfw.security._apikeys import ApiKeyService, ApiKeyStore
from saasfw.security._authenticator import Authenticator
from saasfw.security._cors import CorsSettings
from saasfw.security._errors import ConfigurationError
from saasfw.security._events import SecurityEvents
from saasfw.security._headers import SecurityHeadersSettings
from saasfw.security._jwt_keys import JwksKeySet, KeySet, StaticKeySet
from saasfw.security._jwt_verify import ClaimsMapping, JwtVerifier
from saasfw.security._mtls import (
    ClientCertificateVerifier,
    ForwardedCertificateSource,
    MtlsAuthenticator,
    MtlsIdentity,
)
from saasfw.security._passwords import PasswordHasher, PasswordPolicy
from saasfw.security._ratelimit import RateLimitSettings
from saasfw.security._rbac import RbacPolicy
from saasfw.security._revocation import RevocationStore
from saasfw.security._sessions import SessionManager, SessionStore

__all__ = [
    "ApiKeySettings",
    "JwtSettings",
    "MtlsSettings",
    "PasswordSettings",
    "RbacSettings",
    "SecuritySettings",
    "SessionSettings",
    "build_authenticator",
    "build_jwt_verifier",
    "build_password_hasher",
    "build_rbac_policy",
    "security_production_problems",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class JwtSettings(BaseModel):
    """Bearer-token verification (``SAASFW_SECURITY__JWT__*``). Off until ``issuer`` is set.

    Keys: exactly one of ``hmac_secret``, ``public_key_files`` (kid -> PEM path) or
    ``jwks_url``.
    """

    model_config = _FROZEN

    issuer: str | None = None
    audiences: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ("RS256",)
    hmac_secret: SecretStr | None = None
    public_key_files: dict[str, Path] = Field(default_factory=dict)
    jwks_url: str | None = None
    jwks_cache_ttl: float = Field(default=300.0, gt=0)
    jwks_refetch_cooldown: float = Field(default=30.0, ge=0)
    jwks_timeout: float = Field(default=5.0, gt=0, le=60)
    leeway: float = Field(default=30.0, ge=0, le=300)
    max_token_bytes: int = Field(default=8192, ge=256, le=65536)
    cache_size: int = Field(default=10_000, ge=0)
    token_types: tuple[str, ...] = ("at+jwt",)
    accept_missing_typ: bool = False
    tenant_claim: str = "tenant"
    roles_claim: str = "roles"


class ApiKeySettings(BaseModel):
    """API keys (``SAASFW_SECURITY__API_KEYS__*``). Off until a pepper is configured."""

    model_config = _FROZEN

    prefix: str = "sfw"
    header: str = "X-API-Key"
    peppers: dict[str, SecretStr] = Field(default_factory=dict)
    current_pepper: str | None = None


class MtlsIdentitySettings(BaseModel):
    """One row of the certificate-to-principal table."""

    model_config = _FROZEN

    principal_id: str
    kind: Literal["user", "service", "api_key", "mtls"] = "service"
    tenant: str | None = None
    roles: tuple[str, ...] = ()
    permissions: tuple[str, ...] = ()


class MtlsSettings(BaseModel):
    """Client certificates (``SAASFW_SECURITY__MTLS__*``). Off until ``ca_bundle_file``."""

    model_config = _FROZEN

    ca_bundle_file: Path | None = None
    identities: dict[str, MtlsIdentitySettings] = Field(default_factory=dict)
    forwarded_header: str = "x-forwarded-client-cert"
    trusted_proxies: tuple[str, ...] = ()


class RbacSettings(BaseModel):
    """Roles inline (``roles``) or from a YAML file (``policy_file``), not both."""

    model_config = _FROZEN

    roles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    policy_file: Path | None = None


class PasswordSettings(BaseModel):
    """argon2id cost and password rules; defaults are above the OWASP floor."""

    model_config = _FROZEN

    memory_cost: int = Field(default=65536, ge=7168)
    time_cost: int = Field(default=3, ge=1)
    parallelism: int = Field(default=1, ge=1)
    min_length: int = Field(default=8, ge=8)
    max_length: int = Field(default=128, ge=64)
    refuse_common: bool = True


class SessionSettings(BaseModel):
    """Server-side sessions (``SAASFW_SECURITY__SESSIONS__*``)."""

    model_config = _FROZEN

    enabled: bool = False
    idle_timeout: float = Field(default=1800.0, gt=0)
    absolute_timeout: float = Field(default=43200.0, gt=0)
    cookie_name: str = "__Host-session"
    same_site: Literal["lax", "strict"] = "lax"
    secure: bool = True


class SecuritySettings(BaseModel):
    """The ``security`` section of a service's settings (``SAASFW_SECURITY__*``).

    Attributes:
        redis_url: shared state (revocation, sessions) across workers; memory when unset.
    """

    model_config = _FROZEN

    jwt: JwtSettings = Field(default_factory=JwtSettings)
    api_keys: ApiKeySettings = Field(default_factory=ApiKeySettings)
    mtls: MtlsSettings = Field(default_factory=MtlsSettings)
    rbac: RbacSettings = Field(default_factory=RbacSettings)
    passwords: PasswordSettings = Field(default_factory=PasswordSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    redis_url: SecretStr | None = None
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    headers: SecurityHeadersSettings = Field(default_factory=SecurityHeadersSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)


def _key_set(settings: JwtSettings) -> KeySet:
    sources = [
        settings.hmac_secret is not None,
        bool(settings.public_key_files),
        settings.jwks_url is not None,
    ]
    if sum(sources) != 1:
        raise ConfigurationError(
            "configure exactly one JWT key source: jwt.hmac_secret, jwt.public_key_files "
            "or jwt.jwks_url"
        )
    if settings.hmac_secret is not None:
        return StaticKeySet(
            algorithms=settings.algorithms,
            hmac_secrets={None: settings.hmac_secret.get_secret_value()},
        )
    if settings.public_key_files:
        return StaticKeySet(
            algorithms=settings.algorithms,
            public_keys={kid: Path(path) for kid, path in settings.public_key_files.items()},
        )
    if settings.jwks_url is None:  # pragma: no cover - excluded by the count above
        raise ConfigurationError("no JWT key source")
    return JwksKeySet(
        settings.jwks_url,
        algorithms=settings.algorithms,
        cache_ttl=settings.jwks_cache_ttl,
        refetch_cooldown=settings.jwks_refetch_cooldown,
        timeout=settings.jwks_timeout,
    )


def build_jwt_verifier(
    settings: JwtSettings, *, revocation: RevocationStore | None = None
) -> JwtVerifier | None:
    """The verifier, or None when JWT is not configured (no ``issuer``)."""
    if settings.issuer is None:
        return None
    return JwtVerifier(
        _key_set(settings),
        algorithms=settings.algorithms,
        issuer=settings.issuer,
        audiences=settings.audiences,
        token_types=settings.token_types,
        accept_missing_typ=settings.accept_missing_typ,
        leeway=settings.leeway,
        max_token_bytes=settings.max_token_bytes,
        cache_size=settings.cache_size,
        revocation=revocation,
        claims=ClaimsMapping(tenant_claim=settings.tenant_claim, roles_claim=settings.roles_claim),
    )


def build_rbac_policy(settings: RbacSettings) -> RbacPolicy:
    """The policy from inline roles or the YAML file (empty policy: only direct grants)."""
    if settings.roles and settings.policy_file is not None:
        raise ConfigurationError("configure rbac.roles or rbac.policy_file, not both")
    if settings.policy_file is not None:
        return RbacPolicy.from_yaml(settings.policy_file)
    return RbacPolicy.from_mapping({"roles": settings.roles})


def build_password_hasher(settings: PasswordSettings) -> PasswordHasher:
    """The argon2id hasher and policy (refuses parameters below the OWASP floor)."""
    return PasswordHasher(
        memory_cost=settings.memory_cost,
        time_cost=settings.time_cost,
        parallelism=settings.parallelism,
        policy=PasswordPolicy(
            min_length=settings.min_length,
            max_length=settings.max_length,
            refuse_common=settings.refuse_common,
        ),
    )


def _mtls(settings: MtlsSettings) -> MtlsAuthenticator | None:
    if settings.ca_bundle_file is None:
        return None
    identities = {
        key: MtlsIdentity(
            principal_id=row.principal_id,
            kind=row.kind,
            tenant=row.tenant,
            roles=frozenset(row.roles),
            permissions=frozenset(row.permissions),
        )
        for key, row in settings.identities.items()
    }
    verifier = ClientCertificateVerifier(settings.ca_bundle_file, identities)
    forwarded = (
        ForwardedCertificateSource(settings.trusted_proxies, header=settings.forwarded_header)
        if settings.trusted_proxies
        else None
    )
    return MtlsAuthenticator(verifier, forwarded)


def build_authenticator(
    settings: SecuritySettings,
    *,
    events: SecurityEvents | None = None,
    revocation: RevocationStore | None = None,
    api_key_store: ApiKeyStore | None = None,
    session_store: SessionStore | None = None,
) -> Authenticator:
    """Everything configured in ``settings`` wired into one :class:`Authenticator`.

    Stores are passed in (the caller owns their connections): API keys need
    ``api_key_store`` when peppers are configured, sessions need ``session_store``.
    """
    events = events or SecurityEvents()
    api_keys = None
    if settings.api_keys.peppers:
        if api_key_store is None or settings.api_keys.current_pepper is None:
            raise ConfigurationError(
                "API keys are configured: pass api_key_store and set api_keys.current_pepper"
            )
        api_keys = ApiKeyService(
            api_key_store,
            peppers=settings.api_keys.peppers,
            current_pepper=settings.api_keys.current_pepper,
            prefix=settings.api_keys.prefix,
            events=events,
        )
    sessions = None
    if settings.sessions.enabled:
        if session_store is None:
            raise ConfigurationError("sessions are enabled: pass session_store")
        s = settings.sessions
        sessions = SessionManager(
            session_store,
            idle_timeout=s.idle_timeout,
            absolute_timeout=s.absolute_timeout,
            cookie_name=s.cookie_name,
            same_site=s.same_site,
            secure=s.secure,
            events=events,
        )
    return Authenticator(
        jwt=build_jwt_verifier(settings.jwt, revocation=revocation),
        api_keys=api_keys,
        mtls=_mtls(settings.mtls),
        sessions=sessions,
        policy=build_rbac_policy(settings.rbac),
        events=events,
        api_key_header=settings.api_keys.header,
    )


def security_production_problems(settings: SecuritySettings, *, workers: int = 1) -> list[str]:
    """Production rule: what is unsafe or single-process-only in ``settings`` (empty = fine).

    Register it with saasfw.config as a ``ProductionRule``; it includes the rate-limit rule.
    """
    from saasfw.security._ratelimit import rate_limit_production_problems

    problems = list(rate_limit_production_problems(settings.rate_limit, workers=workers))
    jwt = settings.jwt
    if jwt.jwks_url is not None and not jwt.jwks_url.startswith("https://"):
        problems.append("security.jwt.jwks_url must use https://")
    if jwt.hmac_secret is not None and len(jwt.hmac_secret.get_secret_value()) < 32:
        problems.append("security.jwt.hmac_secret must have at least 32 bytes")
    if settings.sessions.enabled and not settings.sessions.secure:
        problems.append("security.sessions.secure must be true (cookies over HTTPS only)")
    if (
        workers > 1
        and settings.redis_url is None
        and (settings.sessions.enabled or jwt.issuer is not None)
    ):
        problems.append(
            f"security.redis_url is unset with {workers} workers: sessions and token "
            "revocation would be per-process"
        )
    return problems
