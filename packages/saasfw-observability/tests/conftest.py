"""Fixtures: a private registry, an in-memory span exporter, captured JSON log lines."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from saasfw.observability import Observability, ObservabilitySettings, setup_observability


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state; put it back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def make_observability(
    registry: CollectorRegistry, exporter: InMemorySpanExporter
) -> Callable[..., Observability]:
    """Build an Observability with a private registry and spans kept in memory."""

    def make(settings: ObservabilitySettings | None = None, **overrides: Any) -> Observability:
        base = settings if settings is not None else ObservabilitySettings(environment="production")
        return setup_observability(
            base,
            registry=registry,
            span_processor=SimpleSpanProcessor(exporter),
            set_global_tracer_provider=False,
            **overrides,
        )

    return make


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider
