"""Wiring saasfw.observability: identity from the service settings, one middleware, /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI

from saasfw.app._defaults import is_default
from saasfw.app._effective import effective_for
from saasfw.app._part import Part
from saasfw.app._settings import ServiceSettings
from saasfw.config import ProductionRule, RuleContext, Violation
from saasfw.observability import (
    Observability,
    ObservabilitySettings,
    production_problems,
    setup_observability,
)

__all__ = [
    "build_observability",
    "observability_rules",
    "observability_settings",
    "wire_observability",
]


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


def wire_observability(
    settings: ServiceSettings, given: Observability | None = None
) -> Part[Observability] | None:
    """Logging, metrics and tracing as a part (None when ``components.observability`` is off).

    Started first and stopped last, so the spans of every other part's shutdown export.
    """
    if not settings.components.observability:
        return None
    obs = given if given is not None else build_observability(settings)

    def install(app: FastAPI) -> None:
        obs.install(app)

    return Part(
        "observability",
        obs,
        lifespan=lambda app: obs.lifespan(),
        middleware={"observability": install},
    )


def _rule(raw: Any, context: RuleContext) -> Iterator[Violation]:
    effective = effective_for(raw, context)
    if effective is None or not effective.components.observability:
        return
    for message in production_problems(observability_settings(effective)):
        setting = message.split(":", 1)[0].split(" ", 1)[0]
        yield Violation("observability", message, f"observability.{setting}")


def observability_rules() -> list[ProductionRule]:
    """saasfw.observability's production checks on the effective section."""
    return [
        ProductionRule(
            "observability",
            _rule,
            description="logs are JSON, redacted and not DEBUG; traces not on the console",
        )
    ]
