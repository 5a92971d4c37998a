"""End to end over real sockets: two services on real uvicorn servers, one calling the other."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry

from saasfw.observability import (
    AccessLogSettings,
    Observability,
    ObservabilitySettings,
    create_async_client,
    get_correlation_id,
    setup_observability,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def _serve(app: FastAPI) -> AsyncIterator[str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        assert server.started
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


def _service(
    name: str, tmp_path: Path, exporter: InMemorySpanExporter
) -> tuple[FastAPI, Observability]:
    settings = ObservabilitySettings(
        service_name=name,
        environment="production",
        access_log=AccessLogSettings(file=tmp_path / f"{name}.log"),
    )
    observability = setup_observability(
        settings,
        registry=CollectorRegistry(),
        span_processor=SimpleSpanProcessor(exporter),
        set_global_tracer_provider=False,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with observability.lifespan():
            yield

    app = FastAPI(lifespan=lifespan, telemetry={"tracing": False})
    return app, observability


async def test_two_services_over_uvicorn_share_trace_and_correlation_id(
    tmp_path: Path, exporter: InMemorySpanExporter
) -> None:
    stock_app, stock_obs = _service("stock", tmp_path, exporter)
    orders_app, orders_obs = _service("orders", tmp_path, exporter)

    @stock_app.get("/stock/{sku}")
    async def stock(sku: str) -> dict[str, Any]:
        return {"sku": sku, "correlation_id": get_correlation_id()}

    stock_obs.install(stock_app)
    stock_url: list[str] = []

    @orders_app.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, Any]:
        assert orders_obs.tracer_provider is not None
        async with create_async_client(tracer_provider=orders_obs.tracer_provider) as client:
            response = await client.get(f"{stock_url[0]}/stock/{order_id}?api_key=abc")
        return {"stock": response.json()}

    orders_obs.install(orders_app)

    async with _serve(stock_app) as stock_base, _serve(orders_app) as orders_base:
        stock_url.append(stock_base)
        async with httpx.AsyncClient(base_url=orders_base) as client:
            response = await client.get("/orders/9", headers={"X-Request-ID": "order-9-abc"})
            long_id = await client.get("/orders/10", headers={"X-Request-ID": "x" * 10_240})

    assert response.status_code == 200
    assert response.headers["x-request-id"] == "order-9-abc"
    # The correlation id travelled with the outgoing call.
    assert response.json()["stock"]["correlation_id"] == "order-9-abc"
    assert long_id.status_code == 200
    assert len(long_id.headers["x-request-id"]) == 32
    assert long_id.json()["stock"]["correlation_id"] == long_id.headers["x-request-id"]

    spans = [s for s in exporter.get_finished_spans() if s.attributes and "/9" in str(s.attributes)]
    orders_span = next(s for s in spans if s.name == "GET /orders/{order_id}")
    client_span = next(s for s in spans if s.kind is SpanKind.CLIENT)
    stock_span = next(s for s in spans if s.name == "GET /stock/{sku}")
    assert len(spans) == 3
    assert orders_span.resource.attributes["service.name"] == "orders"
    assert stock_span.resource.attributes["service.name"] == "stock"
    assert client_span.parent is not None
    assert stock_span.parent is not None
    assert client_span.parent.span_id == orders_span.context.span_id
    assert stock_span.parent.span_id == client_span.context.span_id
    assert stock_span.parent.is_remote
    assert len({s.context.trace_id for s in spans}) == 1
    client_attributes = dict(client_span.attributes or {})
    assert str(client_attributes["url.full"]).endswith("/stock/9")
    assert "api_key" not in json.dumps(client_attributes)
    assert client_attributes["http.response.status_code"] == 200

    # Lifespan exit flushed both access logs; each line names its own trace.
    orders_lines = [json.loads(x) for x in (tmp_path / "orders.log").read_text().splitlines()]
    stock_lines = [json.loads(x) for x in (tmp_path / "stock.log").read_text().splitlines()]
    assert [line["route"] for line in orders_lines] == ["/orders/{order_id}"] * 2
    assert orders_lines[0]["trace_id"] == stock_lines[0]["trace_id"]
    assert orders_lines[0]["trace_id"] == format(orders_span.context.trace_id, "032x")
    assert stock_lines[0]["correlation_id"] == "order-9-abc"


async def test_failed_outgoing_call_ends_its_span_as_error(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    closed_port = _free_port()
    async with create_async_client(tracer_provider=provider) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://127.0.0.1:{closed_port}/x")
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.CLIENT
    assert (span.attributes or {})["error.type"] == "ConnectError"
    assert span.end_time is not None


def test_sync_client_propagates_too(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    from saasfw.observability import create_client

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503)

    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span("parent") as parent,
        create_client(tracer_provider=provider, transport=httpx.MockTransport(handler)) as client,
    ):
        client.get("http://user:pw@svc.local:8080/a?b=c")
    (request,) = seen
    client_span = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT)
    trace_id = format(parent.get_span_context().trace_id, "032x")
    span_id = format(client_span.context.span_id, "016x")
    version, sent_trace, sent_parent, flags = request.headers["traceparent"].split("-")
    assert (version, sent_trace, sent_parent) == ("00", trace_id, span_id)
    assert int(flags, 16) & 0x01  # sampled
    assert (client_span.attributes or {})["url.full"] == "http://svc.local:8080/a"
    assert (client_span.attributes or {})["error.type"] == "503"


async def test_the_servers_error_line_carries_the_request_ids(
    tmp_path: Path, exporter: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    """uvicorn logs an unhandled exception after the middleware returned; the line still
    names the request's correlation id and trace."""
    app, observability = _service("errors", tmp_path, exporter)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/ok")
    async def ok() -> dict[str, str | None]:
        return {"id": get_correlation_id()}

    observability.install(app)
    from saasfw.observability import configure_logging

    configure_logging(observability.settings)
    capsys.readouterr()
    async with _serve(app) as base, httpx.AsyncClient(base_url=base) as client:
        failed = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
        # Same keep-alive connection: the next request must not inherit the id.
        after = await client.get("/ok")
    assert failed.status_code == 500
    assert after.json()["id"] != "boom-1"

    out = capsys.readouterr()
    lines = [json.loads(x) for x in out.out.splitlines() if x.startswith("{")]
    (error_line,) = [x for x in lines if x["event"].strip() == "Exception in ASGI application"]
    assert error_line["logger"] == "uvicorn.error"
    assert error_line["correlation_id"] == "boom-1"
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "GET /boom"]
    assert error_line["trace_id"] == format(span.context.trace_id, "032x")
    assert "RuntimeError: boom" in error_line["exception"]
