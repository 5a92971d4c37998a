"""``ServiceSettings``: the one settings object of a saasfw service.

Each concern package contributes its own ``<Package>Settings`` section; this model nests
them under one ``SAASFW_`` prefix family (``SAASFW_HTTP__PORT``, ``SAASFW_DB__URL``).
Sections the concern packages do not (yet) define themselves, such as token issuance,
live here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from saasfw.audit import AuditSettings
from saasfw.db import DbSettings
from saasfw.k8s import K8sSettings
from saasfw.observability import ObservabilitySettings

__all__ = [
    "ApiKeySettings",
    "AuthSettings",
    "ClientSettings",
    "ComponentSwitches",
    "Environment",
    "HttpSettings",
    "JwtSettings",
    "RoleSettings",
    "ServiceSettings",
]

Environment = Literal["development", "test", "staging", "production"]


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
        description="How many processes serve this service in total (pod replicas); the "
        "production rules refuse per-process state (memory rate limits) when above 1",
    )
    access_log: bool = Field(
        default=False, description="uvicorn's own access log (saasfw writes its own)"
    )
    root_path: str = Field(default="", description="ASGI root_path behind a path-prefix proxy")


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


class JwtSettings(_Section):
    """Access and refresh tokens this service issues and verifies (``SAASFW_AUTH__JWT__*``)."""

    algorithm: Literal["HS256", "RS256", "ES256", "EdDSA"] = "HS256"
    secret: SecretStr | None = Field(
        default=None,
        description="HS256 signing secret (>= 32 bytes); generated per data directory in "
        "development and test, required in staging and production",
    )
    private_key_file: Path | None = Field(
        default=None, description="PEM private key for RS256/ES256/EdDSA"
    )
    key_id: str | None = Field(default=None, description="kid header, for key rotation")
    issuer: str | None = Field(default=None, description="iss claim (default: the service)")
    audience: str | None = Field(default=None, description="aud claim (default: the service)")
    access_ttl: float = Field(default=900.0, gt=0, le=86_400)
    refresh_ttl: float = Field(default=14 * 86_400.0, gt=0, le=365 * 86_400)


class ApiKeySettings(_Section):
    """API keys for machine clients (``SAASFW_AUTH__API_KEYS__*``)."""

    enabled: bool = True
    prefix: str = Field(default="sfw", pattern=r"^[a-z][a-z0-9]{1,15}(_[a-z0-9]{1,15})?$")
    peppers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="HMAC peppers by id (>= 32 bytes each); generated in development/test",
    )
    current_pepper: str | None = Field(default=None, description="pepper id new keys use")


class RoleSettings(_Section):
    """One RBAC role: its grants and the roles it inherits."""

    permissions: list[str] = Field(default_factory=list)
    inherits: list[str] = Field(default_factory=list)
    description: str = ""


class AuthSettings(_Section):
    """Authentication and authorization (``SAASFW_AUTH__*``)."""

    jwt: JwtSettings = Field(default_factory=JwtSettings)
    api_keys: ApiKeySettings = Field(default_factory=ApiKeySettings)
    roles: dict[str, RoleSettings] = Field(default_factory=dict)
    require_declared_security: bool = Field(
        default=True,
        description="refuse to start while a route has neither require(...) nor public",
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
        description="The service's Redis (redis://...): rate limits and token revocation "
        "use it unless they name their own storage; None keeps that state in memory",
    )
    redis_prefix: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._:-]{1,48}$",
        description="Prefix of every Redis key (default: the service name)",
    )
    http: HttpSettings = Field(default_factory=HttpSettings)
    components: ComponentSwitches = Field(default_factory=ComponentSwitches)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    db: DbSettings = Field(default_factory=DbSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    k8s: K8sSettings = Field(default_factory=K8sSettings)
    clients: dict[str, ClientSettings] = Field(
        default_factory=dict, description="Downstream services by name"
    )

    def state_dir(self) -> Path:
        """This service's own directory under ``data_dir``."""
        return self.data_dir / self.service.replace("-", "_")
