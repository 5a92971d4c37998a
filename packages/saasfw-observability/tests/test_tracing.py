"""Tracing: one server span per request, W3C propagation, FastAPI's own telemetry."""

from __future__ import annotations

import sys
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from saasfw.observability import (
    MissingExtraError,
    Observability,
    ObservabilityMiddleware,
    ObservabilitySettings,
    TracingSettings,
    TracingTransport,
    configure_tracing,
    current_trace_ids,
)

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _server_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]


def _client(app: FastAPI, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://svc")


async def test_one_request_is_one_server_span_with_semantic_attributes(
    make_observability: Callable[..., Observability], exporter: InMemorySpanExporter
) -> None:
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    make_observability().install(app)
    async with _client(app) as client:
        response = await client.get("/items/42?token=secret-value")
    assert response.status_code == 200

    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET /items/{item_id}"
    assert span.parent is None
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "http.route": "/items/{item_id}",
        "http.response.status_code": 200,
        "url.path": "/items/42",
        "url.scheme": "http",
        "network.protocol.version": "1.1",
        "client.address": "127.0.0.1",
    }
    assert "secret-value" not in str(span.to_json())
    assert span.resource.attributes["service.name"] == "saasfw-service"
    assert span.resource.attributes["deployment.environment.name"] == "production"


async def test_incoming_traceparent_continues_the_callers_trace(
    make_observability: Callable[..., Observability], exporter: InMemorySpanExporter
) -> None:
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/")
    async def root() -> dict[str, list[str] | None]:
        ids = current_trace_ids()
        return {"ids": list(ids) if ids else None}

    make_observability().install(app)
    async with _client(app) as client:
        response = await client.get("/", headers={"traceparent": TRACEPARENT})

    (span,) = _server_spans(exporter)
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert span.parent.is_remote
    assert response.json()["ids"] == [
        "0af7651916cd43dd8448eb211c80319c",
        format(span.context.span_id, "016x"),
    ]
    assert current_trace_ids() is None


async def test_sampling_ratio_zero_exports_nothing_but_ids_still_flow(
    make_observability: Callable[..., Observability], exporter: InMemorySpanExporter
) -> None:
    settings = ObservabilitySettings(tracing=TracingSettings(sample_ratio=0.0))
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/")
    async def root() -> dict[str, bool]:
        return {"has_ids": current_trace_ids() is not None}

    make_observability(settings).install(app)
    async with _client(app) as client:
        unsampled = await client.get("/")
        # Parent-based: a sampled caller is honoured even at ratio 0.
        await client.get("/", headers={"traceparent": TRACEPARENT})
    assert unsampled.json() == {"has_ids": True}
    (span,) = exporter.get_finished_spans()
    assert format(span.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"


async def test_failures_mark_the_span_as_error(
    make_observability: Callable[..., Observability], exporter: InMemorySpanExporter
) -> None:
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password=hunter2 leaked?")

    make_observability().install(app)
    async with _client(app, raise_app_exceptions=False) as client:
        assert (await client.get("/boom")).status_code == 500
        assert (await client.get("/missing")).status_code == 404

    boom_span, missing_span = exporter.get_finished_spans()
    assert boom_span.status.status_code is StatusCode.ERROR
    assert (boom_span.attributes or {})["error.type"] == "RuntimeError"
    assert (boom_span.attributes or {})["http.response.status_code"] == 500
    assert [event.name for event in boom_span.events] == ["exception"]
    assert missing_span.name == "GET"
    # The failed request's span stays current in this task for the server's error line;
    # the next request still starts its own trace.
    assert missing_span.parent is None
    assert missing_span.context.trace_id != boom_span.context.trace_id
    assert "http.route" not in (missing_span.attributes or {})
    assert missing_span.status.status_code is StatusCode.UNSET


async def test_fastapi_native_telemetry_on_still_yields_one_server_span(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    """FastAPI 0.16x traces by itself when it has a provider; the middleware adopts its span."""
    app = FastAPI(telemetry={"tracer_provider": provider})
    seen: list[tuple[str, str] | None] = []

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        seen.append(current_trace_ids())
        return {"id": item_id}

    app.add_middleware(ObservabilityMiddleware, tracer_provider=provider)
    async with _client(app) as client:
        await client.get("/items/1", headers={"traceparent": TRACEPARENT})

    (span,) = _server_spans(exporter)
    # FastAPI's operation spans (dependencies, endpoint, serialisation) are INTERNAL children.
    assert {s.kind for s in exporter.get_finished_spans()} - {SpanKind.SERVER} <= {
        SpanKind.INTERNAL
    }
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "fastapi"
    assert span.name == "GET /items/{item_id}"
    # Inside the endpoint the current span is FastAPI's endpoint operation span, same trace.
    assert [ids[0] if ids else None for ids in seen] == [format(span.context.trace_id, "032x")]


async def test_fastapi_native_tracing_off_leaves_only_our_span(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    app = FastAPI(telemetry={"tracer_provider": provider, "tracing": False})

    @app.get("/")
    async def root() -> dict[str, str]:
        return {}

    app.add_middleware(ObservabilityMiddleware, tracer_provider=provider)
    async with _client(app) as client:
        await client.get("/")
    spans = exporter.get_finished_spans()
    assert [
        (s.name, s.kind, s.instrumentation_scope.name) for s in spans if s.instrumentation_scope
    ] == [("GET /", SpanKind.SERVER, "saasfw.observability")]


async def test_outgoing_call_is_a_child_client_span_and_the_callee_its_grandchild(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    """Two apps in one process: front calls back through TracingTransport."""
    back = FastAPI(telemetry={"tracing": False})

    @back.get("/stock/{sku}")
    async def stock(sku: str) -> dict[str, str]:
        return {"sku": sku}

    back.add_middleware(ObservabilityMiddleware, tracer_provider=provider)
    front = FastAPI(telemetry={"tracing": False})
    back_client = httpx.AsyncClient(
        transport=TracingTransport(httpx.ASGITransport(app=back), tracer_provider=provider),
        base_url="http://back",
    )

    @front.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, str]:
        response = await back_client.get(f"/stock/{order_id}")
        return response.json()  # type: ignore[no-any-return]

    front.add_middleware(ObservabilityMiddleware, tracer_provider=provider)
    async with _client(front) as client:
        assert (await client.get("/orders/7")).json() == {"sku": "7"}
    await back_client.aclose()

    spans = exporter.get_finished_spans()
    assert len(spans) == 3
    by_kind = {s.kind: s for s in spans}
    front_span = next(s for s in spans if s.name == "GET /orders/{order_id}")
    back_span = next(s for s in spans if s.name == "GET /stock/{sku}")
    client_span = by_kind[SpanKind.CLIENT]
    assert {s.context.trace_id for s in spans} == {front_span.context.trace_id}
    assert front_span.parent is None
    assert client_span.parent is not None
    assert client_span.parent.span_id == front_span.context.span_id
    assert back_span.parent is not None
    assert back_span.parent.span_id == client_span.context.span_id


def test_disabled_tracing_builds_no_provider() -> None:
    settings = ObservabilitySettings(tracing=TracingSettings(enabled=False))
    assert configure_tracing(settings, set_global=False) is None


def test_otlp_without_the_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    settings = ObservabilitySettings(tracing=TracingSettings(exporter="otlp"))
    with pytest.raises(MissingExtraError, match=r"saasfw-observability\[otlp\]") as raised:
        configure_tracing(settings, set_global=False)
    assert isinstance(raised.value, ImportError)


def test_otlp_and_console_exporters_are_wired() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    otlp = configure_tracing(
        ObservabilitySettings(
            tracing=TracingSettings(
                exporter="otlp", otlp_endpoint="http://collector:4318/v1/traces"
            )
        ),
        set_global=False,
    )
    assert otlp is not None
    (processor,) = otlp._active_span_processor._span_processors
    assert isinstance(processor, BatchSpanProcessor)
    assert isinstance(processor._batch_processor._exporter, OTLPSpanExporter)
    otlp.shutdown()
    console = configure_tracing(
        ObservabilitySettings(tracing=TracingSettings(exporter="console")), set_global=False
    )
    assert console is not None
    (processor,) = console._active_span_processor._span_processors
    assert isinstance(processor, SimpleSpanProcessor)
    console.shutdown()


def test_default_fastapi_with_global_provider_has_one_server_span() -> None:
    """The common path: setup installs the global provider and the app keeps FastAPI's
    default telemetry, which then traces too. Run in a subprocess: OpenTelemetry's global
    provider can be set once per process."""
    import subprocess
    import textwrap

    script = textwrap.dedent(
        """
        import asyncio, httpx
        from fastapi import FastAPI
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.trace import SpanKind
        from saasfw.observability import ObservabilitySettings, setup_observability

        exporter = InMemorySpanExporter()
        observability = setup_observability(
            ObservabilitySettings(environment="production"),
            span_processor=SimpleSpanProcessor(exporter),
        )
        app = FastAPI()

        @app.get("/items/{item_id}")
        async def item(item_id: int):
            return {"id": item_id}

        observability.install(app)

        async def main():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
                await c.get("/items/1")
                await c.get("/items/2")

        asyncio.run(main())
        server = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.SERVER]
        print(len(server), sorted({s.name for s in server}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, timeout=60, capture_output=True, text=True
    ).stdout
    assert out.strip().splitlines()[-1] == "2 ['GET /items/{item_id}']"
