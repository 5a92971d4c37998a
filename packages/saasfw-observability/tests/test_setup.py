"""setup_observability and the lifespan: everything flushed and shut down on exit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

from saasfw.observability import (
    MetricsSettings,
    Observability,
    ObservabilitySettings,
    TracingSettings,
)


async def test_lifespan_exit_shuts_the_tracer_provider_down(
    make_observability: Callable[..., Observability], exporter: InMemorySpanExporter
) -> None:
    observability = make_observability()
    assert observability.tracer_provider is not None
    async with observability.lifespan():
        tracer = observability.tracer_provider.get_tracer("t")
        tracer.start_span("before").end()
    assert [s.name for s in exporter.get_finished_spans()] == ["before"]
    # After shutdown the provider records nothing more.
    tracer.start_span("after").end()
    assert [s.name for s in exporter.get_finished_spans()] == ["before"]
    observability.shutdown()  # idempotent


def test_switches_leave_parts_out(make_observability: Callable[..., Observability]) -> None:
    observability = make_observability(
        ObservabilitySettings(
            metrics=MetricsSettings(enabled=False), tracing=TracingSettings(enabled=False)
        )
    )
    assert observability.metrics is None
    assert observability.tracer_provider is None
    options = observability.middleware_options()
    assert options["metrics"] is None
    assert options["tracer_provider"] is None


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError):
        ObservabilitySettings(tracing=TracingSettings(sample_ratio=1.5))
    with pytest.raises(ValidationError, match="strictly increasing"):
        MetricsSettings(buckets=(1.0, 0.5))
    with pytest.raises(ValidationError):
        ObservabilitySettings.model_validate({"unknown": 1})
    assert ObservabilitySettings(environment="production").log_format() == "json"
    assert ObservabilitySettings(environment="local").log_format() == "console"


def test_otlp_header_secrets_never_show_in_repr() -> None:
    settings = TracingSettings(exporter="otlp", otlp_headers={"authorization": "Bearer s3cr3t"})
    assert "s3cr3t" not in repr(settings)
    assert "s3cr3t" not in settings.model_dump_json()
