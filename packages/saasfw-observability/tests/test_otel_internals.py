"""The adapter over the OpenTelemetry SDK's private provider attributes (``_otel_internals``):
the installed SDK's real layout is read, and a provider without it takes the documented
fallback, which still exports correct server spans (through the SDK's own tracer).

CI runs this file twice (scripts/check_adapters.py): at the locked, newest versions and at
the lowest versions the pyproject ranges allow.
"""

from __future__ import annotations

from types import SimpleNamespace

import httpx
from fastapi import FastAPI
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from saasfw.observability import ObservabilityMiddleware
from saasfw.observability._otel_internals import processor_view, span_limits, tracer_enabled
from saasfw.observability._serverspan import ServerSpan, ServerSpans


def test_the_real_provider_layout_is_read() -> None:
    exporter = InMemorySpanExporter()
    limits = SpanLimits(max_span_attributes=7)
    provider = TracerProvider(span_limits=limits)
    view = processor_view(provider)
    assert view is not None
    assert view.current() == ()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    assert view.current() == (processor,)  # live: a processor added later is seen
    assert span_limits(provider) is limits
    assert tracer_enabled(provider.get_tracer("t")) is True


class _ListMultiProcessor(SpanProcessor):
    """A provider's multi-processor laid out as a release might lay it out: processors in
    a list under another name, no ``_span_processors`` tuple."""

    def __init__(self) -> None:
        self._processors: list[SpanProcessor] = []

    def add_span_processor(self, processor: SpanProcessor) -> None:
        self._processors.append(processor)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._processors:
            processor.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for processor in self._processors:
            processor.on_end(span)

    def shutdown(self) -> None:
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self._processors)


def _provider_without_known_layout() -> TracerProvider:
    return TracerProvider(active_span_processor=_ListMultiProcessor())  # type: ignore[arg-type]


def test_missing_names_take_the_documented_fallbacks() -> None:
    assert processor_view(_provider_without_known_layout()) is None
    assert processor_view(object()) is None
    assert ServerSpans.for_provider(_provider_without_known_layout(), "saasfw") is None
    # No _span_limits (or something else there): the SDK's defaults, from the environment.
    assert span_limits(object()).max_span_attributes == SpanLimits().max_span_attributes
    assert span_limits(SimpleNamespace(_span_limits="moved")).max_events == SpanLimits().max_events
    assert tracer_enabled(object()) is True  # no _is_enabled: the SDK cannot disable it
    assert tracer_enabled(SimpleNamespace(_is_enabled=lambda: False)) is False


async def _request(provider: TracerProvider) -> list[object]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, str]:
        return {"id": order_id}

    app.add_middleware(ObservabilityMiddleware, tracer_provider=provider)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        assert (await client.get("/orders/7")).status_code == 200
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


async def test_the_fast_path_serves_a_provider_with_the_known_layout() -> None:
    provider = TracerProvider()
    assert ServerSpans.for_provider(provider, "saasfw") is not None
    (server,) = await _request(provider)
    assert server.name == "GET /orders/{order_id}"
    assert dict(server.attributes or {})["http.response.status_code"] == 200


async def test_without_the_internals_the_sdk_tracer_makes_the_same_span() -> None:
    (server,) = await _request(_provider_without_known_layout())
    assert not isinstance(server, ServerSpan)
    assert server.name == "GET /orders/{order_id}"
    attributes = dict(server.attributes or {})
    assert attributes["http.route"] == "/orders/{order_id}"
    assert attributes["http.response.status_code"] == 200
