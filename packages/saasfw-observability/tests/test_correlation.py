"""Correlation ids: accepted when well formed, generated otherwise, isolated per request."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.concurrency import run_in_threadpool
from starlette.types import Message, Receive, Scope, Send

from saasfw.observability import (
    CorrelationSettings,
    Observability,
    ObservabilityMiddleware,
    ObservabilitySettings,
    current_trace_ids,
    get_correlation_id,
)

GENERATED = 32  # hex characters of a generated id


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def test_concurrent_requests_each_log_only_their_own_ids(
    make_observability: Callable[..., Observability],
    exporter: InMemorySpanExporter,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """50 requests in flight at once; every line of each carries its id and trace id."""
    concurrency = 50
    barrier = asyncio.Barrier(concurrency)
    std_logger = logging.getLogger("app.std")
    log = structlog.get_logger("app.structlog")
    observability = make_observability(ObservabilitySettings(environment="production"))
    app = FastAPI(telemetry={"tracing": False})

    def in_thread(n: int) -> None:
        log.info("in thread", n=n, seen=get_correlation_id())

    async def in_task(n: int) -> None:
        await asyncio.sleep(0)
        std_logger.info("in task %d", n)

    @app.get("/work/{n}")
    async def work(n: int) -> dict[str, Any]:
        log.info("start", n=n)
        await barrier.wait()  # every request is now in flight at the same time
        std_logger.info("after barrier %d", n)
        await run_in_threadpool(in_thread, n)
        await asyncio.create_task(in_task(n))
        return {"n": n, "ids": current_trace_ids()}

    observability.install(app)
    capsys.readouterr()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        responses = await asyncio.gather(
            *(
                client.get(f"/work/{n}", headers={"X-Request-ID": f"req-{n:03d}"})
                for n in range(concurrency)
            )
        )
    lines = [line for line in _lines(capsys.readouterr().out) if line["logger"] != "httpx"]

    for n, response in enumerate(responses):
        assert response.status_code == 200
        assert response.headers["x-request-id"] == f"req-{n:03d}"
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_id[line["correlation_id"]].append(line)
    assert set(by_id) == {f"req-{n:03d}" for n in range(concurrency)}

    server_spans = {
        format(span.context.trace_id, "032x"): span
        for span in exporter.get_finished_spans()
        if span.kind is SpanKind.SERVER
    }
    trace_ids = set()
    for n in range(concurrency):
        request_lines = by_id[f"req-{n:03d}"]
        events = sorted(line["event"] for line in request_lines)
        assert events == sorted(
            ["start", f"after barrier {n}", "in thread", f"in task {n}", "request"]
        )
        for line in request_lines:
            if "n" in line:
                assert line["n"] == n
            if "seen" in line:
                assert line["seen"] == f"req-{n:03d}"
            if line["event"] == "request":
                assert line["path"] == f"/work/{n}"
        request_trace_ids = {line["trace_id"] for line in request_lines}
        assert len(request_trace_ids) == 1
        (trace_id,) = request_trace_ids
        assert trace_id in server_spans
        assert responses[n].json()["ids"][0] == trace_id
        assert {line["span_id"] for line in request_lines} == {
            format(server_spans[trace_id].context.span_id, "016x")
        }
        trace_ids.add(trace_id)
    assert len(trace_ids) == concurrency


@pytest.mark.parametrize(
    "incoming",
    [
        b"abc\r\nSet-Cookie: session=stolen",
        b"abc\nforged log line",
        b"a" * 10_240,
        b"",
        b"has space",
        b'quote"d',
        b"caf\xc3\xa9",
        b"a" * 129,
    ],
    ids=["crlf", "lf", "10kb", "empty", "space", "quote", "non-ascii", "one-too-long"],
)
async def test_malformed_ids_are_replaced_never_echoed(incoming: bytes) -> None:
    seen: list[str | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(get_correlation_id())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = ObservabilityMiddleware(app, correlation=CorrelationSettings())
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "root_path": "",
        "headers": [(b"host", b"svc"), (b"x-request-id", incoming)],
    }
    await middleware(scope, receive, send)

    (generated,) = seen
    assert generated is not None
    assert len(generated) == GENERATED
    int(generated, 16)
    echoed = dict(sent[0]["headers"])[b"x-request-id"]
    assert echoed == generated.encode()
    assert incoming not in b"".join(value for _, value in sent[0]["headers"]) or not incoming


@pytest.mark.parametrize(
    "incoming",
    ["0f8fad5b-d9cb-469f-a165-70867728950e", "a" * 128, "Root=1-5759e988;Parent=x"[:4], "b64+/="],
)
async def test_well_formed_ids_are_kept(incoming: str) -> None:
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/")
    async def root() -> dict[str, str | None]:
        return {"id": get_correlation_id()}

    app.add_middleware(ObservabilityMiddleware, correlation=CorrelationSettings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        response = await client.get("/", headers={"X-Request-ID": incoming})
    assert response.json() == {"id": incoming}
    assert response.headers["x-request-id"] == incoming


async def test_header_name_is_configurable_and_excluded_paths_still_get_ids() -> None:
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/healthz")
    async def healthz() -> dict[str, str | None]:
        return {"id": get_correlation_id()}

    app.add_middleware(
        ObservabilityMiddleware,
        correlation=CorrelationSettings(header="X-Correlation-ID"),
        excluded_paths=("/healthz",),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        kept = await client.get("/healthz", headers={"X-Correlation-ID": "abc-1"})
        ignored = await client.get("/healthz", headers={"X-Request-ID": "abc-2"})
    assert kept.json() == {"id": "abc-1"}
    assert kept.headers["x-correlation-id"] == "abc-1"
    assert "x-request-id" not in kept.headers
    assert ignored.json()["id"] != "abc-2"
    assert len(ignored.headers["x-correlation-id"]) == GENERATED


async def test_echo_can_be_switched_off_and_ids_vanish_after_the_request() -> None:
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/")
    async def root() -> dict[str, str | None]:
        return {"id": get_correlation_id()}

    app.add_middleware(ObservabilityMiddleware, correlation=CorrelationSettings(echo=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        response = await client.get("/", headers={"X-Request-ID": "kept-1"})
    assert response.json() == {"id": "kept-1"}
    assert "x-request-id" not in response.headers
    assert get_correlation_id() is None
    assert structlog.contextvars.get_contextvars() == {}


def test_header_setting_rejects_non_token_names() -> None:
    with pytest.raises(ValueError, match="header name"):
        CorrelationSettings(header="X Request ID")


async def test_websockets_and_lifespan_pass_through_untouched(
    make_observability: Callable[..., Observability],
) -> None:
    seen: list[tuple[str, str | None]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope["type"], get_correlation_id()))
        await send({"type": "websocket.close", "code": 1000})

    observability = make_observability()
    middleware = ObservabilityMiddleware(app, **observability.middleware_options())
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    for kind in ("websocket", "lifespan"):
        scope: Scope = {"type": kind, "path": "/ws", "headers": [(b"x-request-id", b"w-1")]}
        await middleware(scope, receive, send)
    assert seen == [("websocket", None), ("lifespan", None)]
    assert sent == [{"type": "websocket.close", "code": 1000}] * 2
