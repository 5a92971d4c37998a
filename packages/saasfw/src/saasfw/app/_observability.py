"""Wiring saasfw.observability: identity from the service settings, one middleware, /metrics."""

from __future__ import annotations

from saasfw.app._defaults import is_default
from saasfw.app._settings import ServiceSettings
from saasfw.observability import Observability, ObservabilitySettings, setup_observability

__all__ = ["build_observability", "observability_settings"]


def observability_settings(settings: ServiceSettings) -> ObservabilitySettings:
    """The observability section with the service's name, version and environment filled in.

    Values set explicitly in the section win. (Health probes never reach this middleware:
    the probe middleware outside it answers them.)
    """
    section = settings.observability
    update: dict[str, object] = {}
    if is_default(section, "service_name"):
        update["service_name"] = settings.service
    if is_default(section, "service_version"):
        update["service_version"] = settings.version
    if is_default(section, "environment"):
        update["environment"] = settings.env
    if is_default(section, "excluded_paths"):
        update["excluded_paths"] = (section.metrics.path,)
    return section.model_copy(update=update)


def build_observability(settings: ServiceSettings) -> Observability:
    """Configure logging, metrics and tracing for the service (process-wide logging)."""
    return setup_observability(observability_settings(settings))
