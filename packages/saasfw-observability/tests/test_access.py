"""The access line: one per request, to a buffered file or through logging, flushed on exit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from saasfw.observability import (
    AccessLogSettings,
    JsonLinesAccessLog,
    LoggingAccessLog,
    Observability,
    ObservabilitySettings,
)


def _lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _app(observability: Observability) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with observability.lifespan():
            yield

    app = FastAPI(lifespan=lifespan, telemetry={"tracing": False})

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    observability.install(app)
    return app


async def test_file_lines_are_buffered_and_flushed_by_the_lifespan(
    tmp_path: Path, make_observability: Callable[..., Observability]
) -> None:
    path = tmp_path / "logs" / "access.jsonl"
    settings = ObservabilitySettings(
        access_log=AccessLogSettings(file=path, flush_interval=60, buffer_size=1 << 20)
    )
    observability = make_observability(settings)
    app = _app(observability)
    async with observability.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            for n in range(5):
                await client.get(f"/items/{n}", headers={"X-Request-ID": f"id-{n}"})
            await client.get("/nope")
        assert path.read_text() == ""  # still in the buffer: no flush for 60 s
    lines = _lines(path.read_text())
    assert [(line["route"], line["status"], line["correlation_id"]) for line in lines[:5]] == [
        ("/items/{item_id}", 200, f"id-{n}") for n in range(5)
    ]
    assert lines[5]["route"] == "<unmatched>"
    assert lines[5]["status"] == 404
    first = lines[0]
    assert set(first) == {
        "timestamp",
        "level",
        "logger",
        "event",
        "method",
        "path",
        "route",
        "status",
        "duration_ms",
        "correlation_id",
        "trace_id",
        "span_id",
    }
    assert first["logger"] == "saasfw.access"
    assert first["level"] == "info"
    assert first["event"] == "request"
    assert isinstance(first["duration_ms"], float)
    assert first["timestamp"].endswith("Z")


async def test_periodic_flush_while_running(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    access_log = JsonLinesAccessLog(path, flush_interval=0.05)
    access_log.write({"event": "request", "path": "/a"})
    assert path.read_text() == ""
    await asyncio.sleep(0.06)
    access_log.write({"event": "request", "path": "/b"})  # due: flushes both
    assert [line["path"] for line in _lines(path.read_text())] == ["/a", "/b"]
    access_log.close()
    access_log.write({"event": "request", "path": "/late"})
    assert access_log.written == 2
    assert access_log.dropped == 1


async def test_untrusted_values_cannot_break_the_line(tmp_path: Path) -> None:
    path = tmp_path / "access.jsonl"
    access_log = JsonLinesAccessLog(path)
    access_log.write({"path": '/a"\n{"forged": true}\u2028é'})
    access_log.close()
    (line,) = _lines(path.read_text())
    assert line["path"] == '/a"\n{"forged": true}\u2028é'


_text = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(
    method=_text,
    path=_text,
    route=_text,
    status=st.integers(0, 999),
    duration=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    correlation_id=st.none() | _text,
    ids=st.none() | st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 2**64 - 1)),
)
def test_the_middlewares_direct_line_is_byte_for_byte_the_generic_one(
    tmp_path_factory: pytest.TempPathFactory,
    method: str,
    path: str,
    route: str,
    status: int,
    duration: float,
    correlation_id: str | None,
    ids: tuple[int, int] | None,
) -> None:
    """write_request formats by hand for speed: it must produce exactly what write() does
    for the same fields, including every escape (quotes, newlines, U+2028, non-ASCII)."""
    directory = tmp_path_factory.mktemp("line")
    trace_id, span_id = (format(ids[0], "032x"), format(ids[1], "016x")) if ids else (None, None)
    duration_ms = round(duration, 3)
    fields: dict[str, Any] = {
        "event": "request",
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "correlation_id": correlation_id,
    }
    if ids:
        fields["trace_id"], fields["span_id"] = trace_id, span_id
    generic, direct = JsonLinesAccessLog(directory / "a"), JsonLinesAccessLog(directory / "b")
    try:
        for sink in (generic, direct):
            sink._clock = SimpleNamespace(now=lambda: "2026-11-22T00:00:00.000000Z")  # type: ignore[assignment]
        generic.write(fields)
        direct.write_request(
            method, path, route, status, duration_ms, correlation_id, trace_id, span_id
        )
    finally:
        generic.close()
        direct.close()
    assert (directory / "b").read_bytes() == (directory / "a").read_bytes()
    assert json.loads((directory / "b").read_bytes())["path"] == path


async def test_access_line_through_logging_by_default(
    make_observability: Callable[..., Observability], capsys: pytest.CaptureFixture[str]
) -> None:
    observability = make_observability(ObservabilitySettings(environment="production"))
    assert isinstance(observability.access_log, LoggingAccessLog)
    app = _app(observability)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        await client.get("/items/1", headers={"X-Request-ID": "abc"})
    (line,) = [x for x in _lines(capsys.readouterr().out) if x["logger"] == "saasfw.access"]
    assert line["route"] == "/items/{item_id}"
    assert line["correlation_id"] == "abc"
    assert len(line["trace_id"]) == 32


async def test_access_log_can_be_switched_off(
    make_observability: Callable[..., Observability], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = ObservabilitySettings(
        environment="production", access_log=AccessLogSettings(enabled=False)
    )
    observability = make_observability(settings)
    assert observability.access_log is None
    app = _app(observability)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        await client.get("/items/1")
    assert [x for x in _lines(capsys.readouterr().out) if x["logger"] == "saasfw.access"] == []


def test_a_full_disk_drops_and_reports_instead_of_failing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    access_log = JsonLinesAccessLog("/dev/full", buffer_size=0)
    with caplog.at_level("ERROR", logger="saasfw.observability"):
        access_log.write({"path": "/a"})
        access_log.write({"path": "/b"})
    assert access_log.written == 0
    assert access_log.dropped == 2
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["access log /dev/full"]
    access_log.close()
