"""The middleware's own server span (``_serverspan``): what user code does to the current
span is kept, limits hold, and any processor that needs the SDK's span gets the SDK path."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from saasfw.observability import ObservabilityMiddleware
from saasfw.observability._serverspan import ServerSpan, ServerSpans


def _app(provider: TracerProvider) -> FastAPI:
    app = FastAPI(telemetry={"tracing": False})
    tracer = provider.get_tracer("user-code")

    @app.get("/work/{n}")
    async def work(n: int) -> dict[str, int]:
        current = trace.get_current_span()
        current.set_attribute("orders.count", n)
        current.set_attributes({"http.route": "forged", "tenant": "t1"})
        current.add_event("cache.miss", {"key": "k1"})
        current.add_link(trace.SpanContext(0xABC, 0xDEF, is_remote=True))
        with tracer.start_as_current_span("child"):
            pass
        try:
            raise LookupError("no such order")
        except LookupError as exc:
            current.record_exception(exc)
        current.set_status(StatusCode.OK)
        current.set_status(StatusCode.ERROR)  # OK is final
        return {"n": n}

    app.add_middleware(ObservabilityMiddleware, tracer_provider=provider)
    return app


async def _get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        return await client.get(path)


def _by_kind(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is kind]


async def test_what_user_code_records_on_the_server_span_is_exported() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert (await _get(_app(provider), "/work/3")).json() == {"n": 3}

    (server,) = _by_kind(exporter, SpanKind.SERVER)
    (child,) = _by_kind(exporter, SpanKind.INTERNAL)
    attributes = dict(server.attributes or {})
    assert attributes["orders.count"] == 3
    assert attributes["tenant"] == "t1"
    # The middleware's own attributes are set last: user code cannot forge the route.
    assert attributes["http.route"] == "/work/{n}"
    assert attributes["http.response.status_code"] == 200
    assert server.name == "GET /work/{n}"
    assert [e.name for e in server.events] == ["cache.miss", "exception"]
    exception = dict(server.events[1].attributes or {})
    assert exception["exception.type"] == "LookupError"
    assert exception["exception.message"] == "no such order"
    assert "LookupError: no such order" in str(exception["exception.stacktrace"])
    assert [link.context.span_id for link in server.links] == [0xDEF]
    assert server.status.status_code is StatusCode.OK
    assert child.parent is not None
    assert child.parent.span_id == server.context.span_id
    assert child.context.trace_id == server.context.trace_id
    assert server.resource is provider.resource
    assert server.instrumentation_scope is not None
    assert server.instrumentation_scope.name == "saasfw.observability"
    assert server.start_time is not None
    assert server.end_time is not None
    assert server.start_time <= server.end_time


async def test_span_limits_of_the_provider_hold_for_user_attributes_and_events() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        span_limits=SpanLimits(max_span_attributes=2, max_events=1, max_attribute_length=4)
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    await _get(_app(provider), "/work/1")
    (server,) = _by_kind(exporter, SpanKind.SERVER)
    assert len(server.events) == 1
    assert dict(server.events[0].attributes or {}) == {"key": "k1"}
    # As with the SDK's span, the limits hold for every attribute: at most two kept (the
    # newest: the middleware's, set last), string values cut to four characters.
    attributes = dict(server.attributes or {})
    assert len(attributes) == 2
    assert attributes["http.route"] == "/wor"
    assert all(len(str(v)) <= 4 for v in attributes.values())


class _Starting(SpanProcessor):
    """A processor that needs spans while they run: the SDK path must serve it."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started.append(span.name)


async def test_a_processor_needing_on_start_gets_the_sdk_span_even_when_added_late() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = _app(provider)
    await _get(app, "/work/1")
    starting = _Starting()
    provider.add_span_processor(starting)  # after the middleware was built
    await _get(app, "/work/2")
    assert starting.started == ["GET", "child"]
    servers = _by_kind(exporter, SpanKind.SERVER)
    assert [s.name for s in servers] == ["GET /work/{n}", "GET /work/{n}"]
    assert [dict(s.attributes or {})["orders.count"] for s in servers] == [1, 2]


def test_the_fast_path_serves_only_sdk_providers_with_end_only_processors() -> None:
    assert ServerSpans.for_provider(trace.NoOpTracerProvider(), "x") is None
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    spans = ServerSpans.for_provider(provider, "x")
    assert spans is not None
    span = spans.start("GET", Context())
    assert isinstance(span, ServerSpan)
    assert span.is_recording()
    span.end()
    assert not span.is_recording()
    provider.add_span_processor(_Starting())
    assert spans.start("GET", Context()) is None
    provider.shutdown()


def test_an_unsampled_request_gets_valid_ids_and_exports_nothing() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    spans = ServerSpans.for_provider(provider, "x")
    assert spans is not None
    span = spans.start("GET", Context())
    assert span is not None
    assert not span.is_recording()
    assert span.get_span_context().is_valid
    span.end()
    assert exporter.get_finished_spans() == ()
