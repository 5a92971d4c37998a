"""Settings for every part of the package, as one pydantic model with a section per part.

``saasfw.config`` (or any loader) fills :class:`ObservabilitySettings`; with the umbrella's
``SAASFW_`` prefix and ``__`` delimiter the fields read as ``SAASFW_OBSERVABILITY__TRACING__
SAMPLE_RATIO`` and so on. Every default is safe to run with.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")

DEFAULT_REDACT_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "token",
    "authorization",
    "secret",
    "api_key",
    "apikey",
    "cookie",
    "credential",
    "private_key",
)

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)


def _default_levels() -> dict[str, LogLevel]:
    # uvicorn's access log is replaced by ours; Alembic announces each of its plugins at
    # INFO on every migration run, which buries the service's own start-up lines.
    return {"uvicorn.access": "WARNING", "alembic.runtime.plugins": "WARNING"}


# Third-party loggers whose INFO lines are chatter on a developer's console: Alembic's
# "Context impl SQLiteImpl." / "Will assume non-transactional DDL." on every migration run
# and its plugin announcements, httpx's line per outgoing request.
DEFAULT_QUIET_LOGGERS: tuple[str, ...] = (
    "alembic.runtime.migration",
    "alembic.runtime.plugins",
    "httpx",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoggingSettings(_Section):
    """structlog and standard-library logging."""

    level: LogLevel = "INFO"
    format: Literal["auto", "json", "console"] = Field(
        default="auto",
        description="auto: console when environment is development or local, JSON otherwise",
    )
    levels: dict[str, LogLevel] = Field(
        default_factory=_default_levels,
        description="per-logger levels; uvicorn.access is quiet because the access log replaces it",
    )
    redact_keys: tuple[str, ...] = Field(
        default=DEFAULT_REDACT_KEYS,
        description="a log key containing any of these (case-insensitive, - and _ alike) "
        "has its value replaced by [REDACTED]",
    )
    stream: Literal["stdout", "stderr"] = "stdout"
    quiet_loggers: tuple[str, ...] = Field(
        default=DEFAULT_QUIET_LOGGERS,
        description="console output only: these third-party loggers print WARNING and above "
        "(a logger named in levels keeps that level instead)",
    )
    show_locals: bool = Field(
        default=False,
        description="console tracebacks list each frame's local variables, which can hold "
        "secrets and SQL parameters: turn on deliberately, in development only",
    )


class AccessLogSettings(_Section):
    """One structured line per request."""

    enabled: bool = True
    file: Path | None = Field(
        default=None,
        description="write JSON lines to this file through a buffered writer; "
        "None sends them through logging as the saasfw.access logger",
    )
    flush_interval: float = Field(default=1.0, gt=0, le=60)
    buffer_size: int = Field(default=65536, ge=0, le=16 * 1024 * 1024)


class CorrelationSettings(_Section):
    """Correlation ids: accepted from a header when well formed, else generated."""

    enabled: bool = True
    header: str = "X-Request-ID"
    max_length: int = Field(default=128, ge=8, le=1024)
    echo: bool = Field(default=True, description="echo the id on the response header")

    @field_validator("header")
    @classmethod
    def _header_is_a_token(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
            raise ValueError("must be an HTTP header name (RFC 9110 token characters)")
        return value


class MetricsSettings(_Section):
    """Prometheus RED metrics."""

    enabled: bool = True
    path: str = Field(default="/metrics", pattern=r"^/[^\s]*$")
    buckets: tuple[float, ...] = DEFAULT_BUCKETS

    @field_validator("buckets")
    @classmethod
    def _buckets_increase(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or list(value) != sorted(set(value)):
            raise ValueError("must be a non-empty, strictly increasing list of seconds")
        return value


class TracingSettings(_Section):
    """OpenTelemetry tracing."""

    enabled: bool = True
    exporter: Literal["otlp", "console", "none"] = Field(
        default="none",
        description="otlp needs the [otlp] extra; none still creates spans, so trace ids "
        "reach logs and outgoing calls, but exports nothing",
    )
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP traces URL; None uses OTEL_EXPORTER_OTLP_* or the exporter default",
    )
    otlp_headers: dict[str, SecretStr] = Field(default_factory=dict)
    otlp_timeout: float = Field(default=10.0, gt=0, le=300)


class ObservabilitySettings(_Section):
    """The observability section of a service's settings."""

    service_name: str = Field(default="saasfw-service", min_length=1)
    service_version: str = "0.0.0"
    environment: str = "development"
    excluded_paths: tuple[str, ...] = Field(
        default=("/metrics",),
        description="requests to these exact paths get no metrics, span or access line "
        "(they still get a correlation id)",
    )
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    access_log: AccessLogSettings = Field(default_factory=AccessLogSettings)
    correlation: CorrelationSettings = Field(default_factory=CorrelationSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    def log_format(self) -> Literal["json", "console"]:
        """The effective log format once ``auto`` is resolved against the environment."""
        if self.logging.format != "auto":
            return self.logging.format
        return "console" if self.environment.lower() in {"development", "local"} else "json"
