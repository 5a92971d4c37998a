"""How the middleware ends its server span: the context left behind, cancelled and odd requests.

Driven straight through ASGI in the test's own task, so what the middleware leaves in the
caller's context (the current span, the correlation id) is visible afterwards.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, StatusCode, get_current_span

from saasfw.observability import ObservabilityMiddleware, get_correlation_id
from saasfw.observability._settings import CorrelationSettings


class _Lines:
    """An access-log sink keeping the lines' fields."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def write(self, fields: dict[str, Any]) -> None:
        self.lines.append(fields)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _scope(method: str = "GET", path: str = "/things") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"svc")],
        "client": ("10.1.2.3", 4321),
        "server": ("svc", 80),
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _middleware(app: Any, provider: TracerProvider, lines: _Lines) -> ObservabilityMiddleware:
    return ObservabilityMiddleware(
        app, correlation=CorrelationSettings(), tracer_provider=provider, access_log=lines
    )


async def _discard(message: dict[str, Any]) -> None:
    pass


async def test_a_normal_request_leaves_no_span_current(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    lines = _Lines()
    await _middleware(_ok, provider, lines)(_scope(), _receive, _discard)

    (span,) = exporter.get_finished_spans()
    assert span.end_time is not None
    assert get_current_span() is INVALID_SPAN
    assert get_correlation_id() is None
    assert lines.lines[0]["span_id"] == format(span.context.span_id, "016x")


async def test_an_escaping_error_leaves_the_ended_span_and_ids_current_for_the_error_line(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def boom(scope: Any, receive: Any, send: Any) -> None:
        raise LookupError("no such thing")

    lines = _Lines()

    async def run() -> tuple[Any, str | None]:
        with pytest.raises(LookupError):
            await _middleware(boom, provider, lines)(_scope(), _receive, _discard)
        return get_current_span(), get_correlation_id()

    # A copied context, as a server task has: what is left bound dies with it.
    current, correlation_id = await asyncio.create_task(run(), context=contextvars.Context())

    (span,) = exporter.get_finished_spans()
    assert current.get_span_context().span_id == span.context.span_id
    assert not current.is_recording()  # ended
    assert correlation_id == lines.lines[0]["correlation_id"]
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "LookupError"
    assert (span.attributes or {})["http.response.status_code"] == 500
    assert [event.name for event in span.events] == ["exception"]
    assert lines.lines[0]["status"] == 500
    assert get_current_span() is INVALID_SPAN  # the test's own context is untouched


async def test_a_cancelled_request_is_499_and_not_an_error(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def gone(scope: Any, receive: Any, send: Any) -> None:
        raise asyncio.CancelledError

    lines = _Lines()
    with pytest.raises(asyncio.CancelledError):
        await _middleware(gone, provider, lines)(_scope(), _receive, _discard)

    (span,) = exporter.get_finished_spans()
    assert (span.attributes or {})["http.response.status_code"] == 499
    assert "error.type" not in (span.attributes or {})
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()
    assert lines.lines[0]["status"] == 499


async def test_an_unknown_method_is_other_with_the_original_kept(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    lines = _Lines()
    await _middleware(_ok, provider, lines)(_scope(method="PURGE"), _receive, _discard)

    (span,) = exporter.get_finished_spans()
    assert span.name == "HTTP"
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "_OTHER"
    assert attributes["http.request.method_original"] == "PURGE"
    assert attributes["client.address"] == "10.1.2.3"
    assert lines.lines[0]["method"] == "_OTHER"
