"""``ServiceSettings``: the one settings object of a saasfw service.

Each concern package contributes its own ``<Package>Settings`` section; this model nests
them under one ``SAASFW_`` prefix family (``SAASFW_HTTP__PORT``, ``SAASFW_DB__URL``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from saasfw.db import DbSettings
from saasfw.observability import ObservabilitySettings

__all__ = ["ComponentSwitches", "Environment", "HttpSettings", "ServiceSettings"]

Environment = Literal["development", "test", "staging", "production"]


class HttpSettings(BaseModel):
    """Where and how the HTTP server listens (env: ``SAASFW_HTTP__<FIELD>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(default="127.0.0.1", description="Interface to bind")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0: any free port)")
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes")
    drain_seconds: float = Field(
        default=5.0, ge=0, description="How long in-flight requests may finish after SIGTERM"
    )
    access_log: bool = Field(
        default=False, description="uvicorn's own access log (saasfw logs its own)"
    )
    root_path: str = Field(default="", description="ASGI root_path behind a path-prefix proxy")


class ComponentSwitches(BaseModel):
    """Which framework pieces ``create_app`` composes (env: ``SAASFW_COMPONENTS__<NAME>``).

    Each piece can also be replaced by passing a built one to ``create_app``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    observability: bool = Field(default=True, description="logging, tracing, ids, metrics")
    health: bool = Field(default=True, description="/health/live, /health/ready, /health/startup")
    problem_details: bool = Field(default=True, description="RFC 9457 error handlers")
    database: bool = Field(default=True, description="saasfw.db Database, session dependency")


class ServiceSettings(BaseModel):
    """The settings of one service; subclass it to add the service's own sections."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: str = Field(
        default="service",
        pattern=r"^[a-z][a-z0-9_-]{0,62}$",
        description="Service name: logs, metrics, traces, database schema, audit producer",
    )
    env: Environment = Field(default="development", description="Deployment environment")
    version: str = Field(default="0.0.0", description="Service version reported everywhere")
    http: HttpSettings = Field(default_factory=HttpSettings)
    components: ComponentSwitches = Field(default_factory=ComponentSwitches)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    db: DbSettings = Field(default_factory=DbSettings)
