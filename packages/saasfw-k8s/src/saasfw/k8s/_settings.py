"""Settings of saasfw.k8s: health probes, drain and shutdown timings, migration step."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class HealthSettings(BaseModel):
    """How health probes are answered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = Field(default="/health", pattern=r"^/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]$")
    """Path prefix of the probe routes (``/health/live``, ``/health/ready``, ...)."""
    cache_ttl_seconds: float = Field(default=1.0, ge=0.0, le=60.0)
    """How long a check result is reused, so probe storms do not hammer dependencies."""
    default_check_timeout_seconds: float = Field(default=2.0, gt=0.0, le=60.0)
    """Timeout of a check registered without its own."""


class LifecycleSettings(BaseModel):
    """How the process drains and shuts down after SIGTERM."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prestop_sleep_seconds: int = Field(default=5, ge=0, le=120)
    """preStop sleep rendered into the Deployment: time for endpoints to stop routing here."""
    drain_timeout_seconds: float = Field(default=20.0, gt=0.0, le=600.0)
    """Longest wait after SIGTERM for in-flight requests to finish (readiness answers 503)."""
    drain_poll_interval_seconds: float = Field(default=0.05, gt=0.0, le=1.0)
    """How often the in-flight count is sampled while draining."""
    shutdown_timeout_seconds: float = Field(default=10.0, gt=0.0, le=600.0)
    """Budget for all shutdown hooks together (audit flush, database close, ...)."""
    grace_margin_seconds: int = Field(default=5, ge=0, le=120)
    """Slack added to the termination grace period so the kubelet never kills a clean exit."""

    @property
    def termination_grace_period_seconds(self) -> int:
        """The pod grace period that covers preStop, drain, shutdown hooks and the margin."""
        return (
            self.prestop_sleep_seconds
            + math.ceil(self.drain_timeout_seconds)
            + math.ceil(self.shutdown_timeout_seconds)
            + self.grace_margin_seconds
        )


class MigrationJobSettings(BaseModel):
    """The Job rendered with ``migrations: job``: the migration command, once per release."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: tuple[str, ...] = Field(default=("saasfw-db", "upgrade"), min_length=1)
    """The container command (the image's ``PATH`` holds the service's console scripts)."""
    versions: str | None = Field(default=None, min_length=1)
    """``SAASFW_DB_MIGRATIONS`` of the Job: the versions directory, as a path in the image or
    ``module:ATTRIBUTE`` (e.g. ``orders_service.migrations:VERSIONS_DIR``); None: the image
    or the ConfigMap sets it."""
    backoff_limit: int = Field(default=2, ge=0, le=20)
    """Retries of a failed run (each in a new pod, so every attempt keeps its log)."""
    active_deadline_seconds: int = Field(default=1800, ge=60, le=86400)
    """Longest run, waits for another run's migration lock included."""
    ttl_seconds_after_finished: int = Field(default=86400, ge=0)
    """How long a finished Job (and its log) is kept before Kubernetes deletes it."""


class K8sSettings(BaseModel):
    """The ``k8s`` section of a saasfw service's settings (``SAASFW_K8S__...``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    health: HealthSettings = HealthSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    migrations: Literal["startup", "job"] = "startup"
    """Who migrates the database: every pod at start-up (under saasfw.db's lock), or a
    rendered Job, the pods then only checking (not ready while the schema is behind)."""
    migration_job: MigrationJobSettings = MigrationJobSettings()
