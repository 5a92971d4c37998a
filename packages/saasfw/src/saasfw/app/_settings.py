"""``ServiceSettings``: the one settings object of a saasfw service.

Each concern package contributes its own ``<Package>Settings`` section; this model nests
them under one ``SAASFW_`` prefix family (``SAASFW_HTTP__PORT``, ``SAASFW_DB__URL``).
What belongs to the composed service rather than to one concern (the HTTP server, which
pieces are on, downstream services) lives here. The tokens the service issues and its
request size limits belong to security: ``security.tokens`` and ``security.request_limits``
(their old top-level names still load for one minor version, with a deprecation warning).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from saasfw.audit import AuditSettings
from saasfw.db import DbSettings
from saasfw.k8s import K8sSettings
from saasfw.messaging import MessagingSettings
from saasfw.observability import ObservabilitySettings
from saasfw.security import SecuritySettings
from saasfw.security.settings import RequestLimitsSettings

__all__ = [
    "ClientSettings",
    "ComponentSwitches",
    "DeploymentSettings",
    "Environment",
    "HttpSettings",
    "OverrideSettings",
    "ServiceSecuritySettings",
    "ServiceSettings",
    "TokenSettings",
]

Environment = Literal["development", "test", "staging", "production"]

_log = logging.getLogger("saasfw.app")


def check_redis_url(url: str) -> None:
    """Raise ValueError (never echoing the URL, which may hold a password) unless it parses."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError("is not a valid URL (check the host, port and password)") from None
    if parts.scheme not in {"redis", "rediss", "unix"}:
        raise ValueError("must start with redis://, rediss:// or unix://")
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("names no host")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(_Section):
    """Where and how the HTTP server listens (env: ``SAASFW_HTTP__<FIELD>``)."""

    host: str = Field(default="127.0.0.1", description="Interface to bind")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port")
    processes: int = Field(
        default=1,
        ge=1,
        le=10_000,
        description="Deprecated: set deployment.instances. Read as the instance count when "
        "deployment.instances is unset and this is above 1",
    )
    access_log: bool = Field(
        default=False, description="uvicorn's own access log (saasfw writes its own)"
    )
    root_path: str = Field(default="", description="ASGI root_path behind a path-prefix proxy")
    trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description="Networks (CIDR) of reverse proxies whose X-Forwarded-For/-Proto are "
        "honoured; from anyone else those headers are ignored",
    )
    freeze_gc: bool = Field(
        default=True,
        description="Once started, move every object built so far (modules, app, settings) "
        "out of the garbage collector's view (gc.freeze): full collections stop re-scanning "
        "them, which costs a server with a large heap much of its throughput",
    )


class DeploymentSettings(_Section):
    """The shape the service is deployed in, which the production rules judge.

    A service is a fleet from its first deploy: with ``instances`` unset, production
    assumes several instances and refuses every piece of per-process state (memory rate
    limits, token revocation, sessions, a local subject key store, SQLite).
    """

    instances: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="How many instances may run at once: replicas at the autoscaler's "
        "maximum, plus the rollout surge, times worker processes. The rendered Kubernetes "
        "overlays set it. Unset means unknown, which production treats as a fleet; set 1 to "
        "declare a single-instance deployment explicitly",
    )


class OverrideSettings(_Section):
    """Named, explicit exceptions to the production rules; each is reported at start-up."""

    allow_audit_off: bool = Field(
        default=False,
        description="Run production with audit switched off (audit.enabled=false or "
        "components.audit=false). Start-up logs a warning and exports "
        "saasfw_audit_disabled=1",
    )


class ComponentSwitches(_Section):
    """Which framework pieces ``create_app`` composes (env: ``SAASFW_COMPONENTS__<NAME>``).

    Each piece can also be replaced by passing a built one to ``create_app``.
    """

    observability: bool = Field(default=True, description="logging, tracing, ids, metrics")
    health: bool = Field(default=True, description="health probes and graceful drain")
    problem_details: bool = Field(default=True, description="RFC 9457 error handlers")
    database: bool = Field(default=True, description="saasfw.db Database, session dependency")
    audit: bool = Field(default=True, description="saasfw.audit logger and its wiring")
    authentication: bool = Field(default=True, description="JWT, API keys, RBAC")
    rate_limiting: bool = Field(default=True, description="global and per-route limits")
    security_headers: bool = Field(default=True, description="security headers and CORS")
    request_limits: bool = Field(default=True, description="413/431 for oversized requests")
    audit_in_database: bool = Field(
        default=False,
        description="also write audit events to the service's own database (audit's SQL "
        "sink), which makes them searchable",
    )
    audit_search: bool = Field(
        default=False,
        description="mount the auditors' router (GET /audit/events, /audit/stats), guarded "
        "by the audit:read permission; audit:decrypt shows encrypted fields in clear",
    )
    route_security_check: bool = Field(
        default=True,
        description="refuse to start while a route has neither require(...) nor public",
    )
    messaging: bool = Field(
        default=False,
        description="saasfw.messaging: publish through the outbox, consume events (settings "
        "section messaging)",
    )


class TokenSettings(_Section):
    """Tokens this service issues itself (``security.tokens``, ``SAASFW_SECURITY__TOKENS__*``).

    Verification is saasfw.security's ``security.jwt`` section; an issuing service signs with
    the same key: ``security.jwt.hmac_secret`` for HS256 (generated per data directory in
    development and test, required elsewhere), or ``signing_key_file`` for RS256/ES256/EdDSA.
    """

    enabled: bool = Field(default=True, description="issue access and refresh tokens")
    algorithm: Literal["HS256", "RS256", "ES256", "EdDSA"] = "HS256"
    signing_key_file: Path | None = Field(
        default=None, description="PEM private key for RS256/ES256/EdDSA"
    )
    key_id: str | None = Field(default=None, description="kid header, for key rotation")
    access_ttl: float = Field(default=900.0, gt=0, le=86_400)
    refresh_ttl: float = Field(default=14 * 86_400.0, gt=0, le=365 * 86_400)


class ServiceSecuritySettings(SecuritySettings):
    """The ``security`` section of a service (``SAASFW_SECURITY__*``).

    saasfw.security's own sections (``jwt``, ``api_keys``, ``rate_limit``, ``headers``,
    ``cors``...), plus the two a composed service adds: the tokens it issues and the request
    size limits of its security layer.
    """

    tokens: TokenSettings = Field(default_factory=TokenSettings)
    request_limits: RequestLimitsSettings = Field(default_factory=RequestLimitsSettings)


# Sections that moved under ``security`` in 0.3.0; the old top-level names load until 0.4.0.
MOVED_SECTIONS = {"tokens": "security.tokens", "request_limits": "security.request_limits"}


def _plain(value: Any) -> Any:
    """A section given as a model instance, as the mapping of its fields (to merge it)."""
    return dict(value) if isinstance(value, BaseModel) else value


def _merge_moved(old: Any, new: Any) -> Any:
    """The old spelling under the new one: keys set under the new path win."""
    old, new = _plain(old), _plain(new)
    if new is None:
        return old
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        merged = dict(old)
        for key, value in new.items():
            merged[key] = _merge_moved(merged.get(key), value) if key in merged else value
        return merged
    return new


def moved_section_message(old: str) -> str:
    """The warning for a section set under its pre-0.3 name."""
    new = MOVED_SECTIONS[old]
    env_new = "SAASFW_" + new.upper().replace(".", "__") + "__*"
    return (
        f"the settings section '{old}' moved to '{new}' in saasfw 0.3.0: write '{new}' "
        f"(YAML 'security: {{{old}: ...}}', env {env_new}); "
        f"the old name (SAASFW_{old.upper()}__*) is read until 0.4.0"
    )


class ClientSettings(_Section):
    """One downstream service (``SAASFW_CLIENTS__<NAME>__*``)."""

    base_url: str = Field(pattern=r"^https?://[^\s]+$")
    timeout: float = Field(default=5.0, gt=0, le=300, description="seconds per attempt")
    connect_timeout: float = Field(default=2.0, gt=0, le=60)
    retries: int = Field(
        default=2, ge=0, le=10, description="extra attempts for idempotent calls only"
    )
    backoff: float = Field(default=0.1, gt=0, le=30, description="first retry delay (s)")
    backoff_max: float = Field(default=2.0, gt=0, le=300)
    breaker_failures: int = Field(
        default=5, ge=1, le=1000, description="consecutive failures that open the breaker"
    )
    breaker_reset: float = Field(
        default=30.0, gt=0, le=3600, description="seconds before a half-open trial call"
    )
    api_key: SecretStr | None = Field(
        default=None, description="service credential sent as X-API-Key"
    )
    bearer_token: SecretStr | None = Field(
        default=None, description="service credential sent as Authorization: Bearer"
    )
    max_connections: int = Field(default=100, ge=1, le=10_000)


class ServiceSettings(_Section):
    """The settings of one service; subclass it to add the service's own sections."""

    service: str = Field(
        default="service",
        pattern=r"^[a-z][a-z0-9_-]{0,62}$",
        description="Service name: logs, metrics, traces, database schema, audit producer",
    )
    env: Environment = Field(default="production", description="Deployment environment")
    version: str = Field(default="0.0.0", description="Service version reported everywhere")
    data_dir: Path = Field(
        default=Path("var"),
        description="Local state: SQLite file, audit log, development keys (per service)",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="The service's Redis (redis://...): rate limits, token revocation and "
        "sessions use it unless they name their own; None keeps that state in memory",
    )
    redis_prefix: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._:-]{1,48}$",
        description="Prefix of every Redis key (default: the service name)",
    )
    http: HttpSettings = Field(default_factory=HttpSettings)
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)
    overrides: OverrideSettings = Field(default_factory=OverrideSettings)
    components: ComponentSwitches = Field(default_factory=ComponentSwitches)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    db: DbSettings = Field(default_factory=DbSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    # No credentials in the default URL (RabbitMQ's guest account is the broker's own
    # default): a default must never read as a weak secret in production.
    messaging: MessagingSettings = Field(
        default_factory=lambda: MessagingSettings(broker_url=SecretStr("amqp://127.0.0.1:5672/"))
    )
    security: ServiceSecuritySettings = Field(default_factory=ServiceSecuritySettings)
    deprecated_tokens: TokenSettings | None = Field(
        default=None,
        alias="tokens",
        exclude=True,
        description="Deprecated since 0.3.0: write security.tokens (read until 0.4.0)",
        json_schema_extra={"deprecated": True},
    )
    deprecated_request_limits: RequestLimitsSettings | None = Field(
        default=None,
        alias="request_limits",
        exclude=True,
        description="Deprecated since 0.3.0: write security.request_limits (read until 0.4.0)",
        json_schema_extra={"deprecated": True},
    )
    k8s: K8sSettings = Field(default_factory=K8sSettings)
    clients: dict[str, ClientSettings] = Field(
        default_factory=dict, description="Downstream services by name"
    )

    @model_validator(mode="before")
    @classmethod
    def _moved_sections(cls, data: Any) -> Any:
        """Move ``tokens``/``request_limits`` (pre-0.3 names) under ``security``, warning.

        Every settings layer (YAML, ``SAASFW_TOKENS__*`` variables, secrets, keyword
        arguments) reaches the model as one mapping, so the move happens once, here; keys
        also set under the new path win.
        """
        if not isinstance(data, Mapping) or not any(old in data for old in MOVED_SECTIONS):
            return data
        data = dict(data)
        security = dict(_plain(data.get("security")) or {})
        for old in MOVED_SECTIONS:
            if old not in data:
                continue
            value = data.pop(old)
            if value is None:
                continue
            security[old] = _merge_moved(value, security.get(old))
            message = moved_section_message(old)
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            _log.warning("%s", message)
        data["security"] = security
        return data

    @field_validator("security", mode="before")
    @classmethod
    def _security_section(cls, value: Any) -> Any:
        """A plain ``SecuritySettings`` (saasfw.security's own model) is accepted as is."""
        if isinstance(value, SecuritySettings) and not isinstance(value, ServiceSecuritySettings):
            return dict(value)
        return value

    @property
    def tokens(self) -> TokenSettings:
        """Deprecated since 0.3.0: ``security.tokens``."""
        warnings.warn(
            "ServiceSettings.tokens is deprecated: read settings.security.tokens",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.security.tokens

    @property
    def request_limits(self) -> RequestLimitsSettings:
        """Deprecated since 0.3.0: ``security.request_limits``."""
        warnings.warn(
            "ServiceSettings.request_limits is deprecated: read settings.security.request_limits",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.security.request_limits

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, value: SecretStr | None) -> SecretStr | None:
        """A malformed URL is a settings error with its source, not a crash at start-up."""
        if value is not None:
            check_redis_url(value.get_secret_value())
        return value

    def state_dir(self) -> Path:
        """This service's own directory under ``data_dir``."""
        return self.data_dir / self.service.replace("-", "_")
