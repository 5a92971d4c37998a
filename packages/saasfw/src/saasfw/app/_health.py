"""Wiring saasfw.k8s: the readiness registry every part's checks join, and the probes.

The probe middleware is the outermost layer: ``/health/*`` is answered before any other
middleware runs, so a probe is never rate limited, authenticated or logged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from saasfw.app._inject import Provided
from saasfw.app._part import Part
from saasfw.app._settings import ServiceSettings
from saasfw.k8s import HealthProbeMiddleware, HealthRegistry, Lifecycle

__all__ = ["health_registry", "lifecycle", "wire_health"]

health_registry: Provided[HealthRegistry] = Provided("health")
"""The readiness/liveness registry; add your own checks to it from your lifespan."""

lifecycle: Provided[Lifecycle] = Provided("lifecycle")
"""The availability state and shutdown hooks (add your own hooks from your lifespan)."""


def wire_health(
    settings: ServiceSettings,
    life: Lifecycle,
    parts: Sequence[Part[Any]],
    given: HealthRegistry | None = None,
) -> Part[HealthRegistry]:
    """The health registry with every part's checks, served by the probe middleware."""
    health = settings.k8s.health
    registry = given or HealthRegistry(
        cache_ttl=health.cache_ttl_seconds, default_timeout=health.default_check_timeout_seconds
    )
    for part in parts:
        for name, check, timeout in part.checks:
            registry.add(name, check, timeout=timeout)
        for name, check, timeout in part.degrading_checks:
            registry.add(name, check, timeout=timeout, critical=False)

    def middleware(app: FastAPI) -> None:
        app.add_middleware(
            HealthProbeMiddleware,
            registry=registry,
            lifecycle=life,
            prefix=health.prefix,
            correlation_header=settings.observability.correlation.header,
        )

    return Part(
        "health",
        registry,
        provides=((health_registry, registry), (lifecycle, life)),
        middleware={"health": middleware} if settings.components.health else {},
    )
