"""OpenTelemetry tracer provider setup: resource, parent-based sampling, exporter."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from opentelemetry import trace

from saasfw.observability._errors import MissingExtraError, ObservabilityConfigError
from saasfw.observability._settings import ObservabilitySettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_log = logging.getLogger("saasfw.observability")


def configure_tracing(
    settings: ObservabilitySettings,
    *,
    span_exporter: SpanExporter | None = None,
    span_processor: SpanProcessor | None = None,
    set_global: bool = True,
) -> TracerProvider | None:
    """Build the service's tracer provider from settings; None when tracing is disabled.

    The resource carries ``service.name``, ``service.version`` and
    ``deployment.environment.name``; sampling is parent-based with a trace-id ratio for
    root spans, so a sampled caller's trace continues here and an unsampled one does not.
    The exporter comes from ``settings.tracing.exporter`` unless ``span_exporter`` (batched)
    or ``span_processor`` (used as is, e.g. a SimpleSpanProcessor in tests) is given.

    With ``set_global`` (the default) the provider becomes OpenTelemetry's global one, so
    libraries and user code calling ``trace.get_tracer()`` join the same traces; an
    already-installed global provider is left alone (OpenTelemetry forbids replacing it)
    and this provider is still returned for the middleware and httpx transport to use.

    Raises:
        MissingExtraError: OTLP export was asked for without the ``[otlp]`` extra.
    """
    tracing = settings.tracing
    if not tracing.enabled:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create(
        {
            "service.name": settings.service_name,
            "service.version": settings.service_version,
            "deployment.environment.name": settings.environment,
        }
    )
    provider = TracerProvider(
        resource=resource,
        sampler=ParentBased(TraceIdRatioBased(tracing.sample_ratio)),
        shutdown_on_exit=False,  # the lifespan shuts it down, flushing what is queued
    )
    if span_processor is not None:
        provider.add_span_processor(span_processor)
    elif span_exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    elif tracing.exporter == "otlp":
        provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(settings)))
    elif tracing.exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif tracing.exporter != "none":  # pragma: no cover - pydantic restricts the values
        raise ObservabilityConfigError(
            f"unknown exporter {tracing.exporter!r}", setting="tracing.exporter"
        )
    if set_global:
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)
        else:
            _log.warning(
                "a global OpenTelemetry tracer provider is already installed; "
                "saasfw.observability uses its own provider for server and client spans"
            )
    return provider


def _otlp_exporter(settings: ObservabilitySettings) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise MissingExtraError("OTLP trace export", "otlp") from exc
    tracing = settings.tracing
    headers = {k: v.get_secret_value() for k, v in tracing.otlp_headers.items()} or None
    return OTLPSpanExporter(
        endpoint=tracing.otlp_endpoint, headers=headers, timeout=tracing.otlp_timeout
    )
