"""One pure ASGI middleware doing correlation ids, RED metrics, the server span and access log.

Four concerns in one layer because every ASGI layer costs a coroutine frame, a ``send``
wrapper and a pass over the headers per request; here each is paid once and every part is
switched off by passing None.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
from collections.abc import Callable, Iterable
from contextvars import Token
from time import perf_counter
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    Span,
    SpanKind,
    Status,
    StatusCode,
    get_current_span,
    set_span_in_context,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, reset_contextvars

from saasfw.observability._access import AccessLog, JsonLinesAccessLog
from saasfw.observability._context import correlation_id_var
from saasfw.observability._metrics import RedMetrics
from saasfw.observability._routes import UNMATCHED, fastapi_route_recorder, route_template
from saasfw.observability._serverspan import ServerSpan, ServerSpans
from saasfw.observability._settings import CorrelationSettings

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

_TRACER_NAME = "saasfw.observability"
_ROOT_CONTEXT = Context()


def correlation_id_pattern(max_length: int) -> re.Pattern[bytes]:
    """Accepted incoming ids: 1..max_length of letters, digits and ``-_.:+/=``.

    Enough for UUIDs, hex, base64 and the ids other gateways generate; excludes CR/LF,
    spaces, quotes and everything else that could split a header or forge a log line.
    """
    return re.compile(rb"[A-Za-z0-9._:+/=-]{1,%d}" % max_length)


def new_correlation_id() -> str:
    """A fresh id: 128 random bits as 32 hex characters (the shape of a UUID4 hex)."""
    return os.urandom(16).hex()


class ObservabilityMiddleware:
    """Pure ASGI middleware for HTTP requests; other scope types pass through untouched.

    Args:
        app: the wrapped ASGI application.
        correlation: correlation-id settings, or None to switch correlation ids off.
        metrics: where to record RED metrics (see :func:`red_metrics`), or None.
        tracer_provider: provider for the one server span per request, or None.
        access_log: sink for one access line per request, or None.
        excluded_paths: exact paths that get no metrics, span or access line.

    When FastAPI's own OpenTelemetry instrumentation is active for the app (FastAPI
    >= 0.16x traces every request as soon as a global tracer provider is installed), the
    middleware does not start a second server span: it uses FastAPI's, so a request still
    has exactly one. Pass ``FastAPI(telemetry={"tracing": False})`` to get this package's
    span and skip FastAPI's per-operation spans.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        correlation: CorrelationSettings | None = None,
        metrics: RedMetrics | None = None,
        tracer_provider: TracerProvider | None = None,
        access_log: AccessLog | None = None,
        excluded_paths: Iterable[str] = ("/metrics",),
    ) -> None:
        self.app = app
        self._correlation = correlation
        self._metrics = metrics
        # One call per request: the file sink formats the line directly (same bytes, less
        # work); any other sink gets the fields.
        self._request_line: Callable[..., None] | None = None
        if isinstance(access_log, JsonLinesAccessLog):
            self._request_line = access_log.write_request
        elif access_log is not None:
            self._request_line = functools.partial(_write_fields, access_log)
        self._excluded = frozenset(excluded_paths)
        if correlation is not None:
            self._header = correlation.header.lower().encode("latin-1")
            self._valid_id = correlation_id_pattern(correlation.max_length).fullmatch
            self._echo = correlation.echo
        else:
            self._header = b""
            self._valid_id = correlation_id_pattern(8).fullmatch
            self._echo = False
        self._tracer = (
            tracer_provider.get_tracer(_TRACER_NAME) if tracer_provider is not None else None
        )
        # The server span without the SDK's per-span bookkeeping (see _serverspan), when
        # the provider allows it; the SDK tracer otherwise.
        self._server_spans = (
            ServerSpans.for_provider(tracer_provider, _TRACER_NAME)
            if tracer_provider is not None
            else None
        )
        self._route_recorder = fastapi_route_recorder()
        self._propagator = propagate.get_global_textmap()
        self._trace_fields = frozenset(f.lower().encode("latin-1") for f in self._propagator.fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        header = self._header
        trace_fields = self._trace_fields
        incoming: bytes | None = None
        carrier: dict[str, str] | None = None
        for name, value in scope["headers"]:
            if name == header:
                incoming = value
            elif name in trace_fields:
                if carrier is None:
                    carrier = {}
                carrier[name.decode("latin-1")] = value.decode("latin-1")

        correlation_id: str | None = None
        id_header: tuple[bytes, bytes] | None = None
        cid_token = None
        structlog_tokens = None
        if self._correlation is not None:
            if incoming is not None and self._valid_id(incoming):
                correlation_id = incoming.decode("ascii")
            else:
                correlation_id = new_correlation_id()
            cid_token = correlation_id_var.set(correlation_id)
            structlog_tokens = bind_contextvars(correlation_id=correlation_id)
            if self._echo:
                id_header = (header, correlation_id.encode("ascii"))

        if scope["path"] in self._excluded:
            if id_header is None:
                await self.app(scope, receive, send)
            else:
                await self.app(scope, receive, _echoing_send(send, id_header))
        else:
            await self._observe(scope, receive, send, correlation_id, id_header, carrier)
        # Reset only after a normal return. When an exception escapes, the server logs it
        # ("Exception in ASGI application") after we return: leaving the ids bound lets
        # that line carry them too. The server runs each request in its own task, whose
        # context copy dies with it, so nothing leaks into other requests.
        if structlog_tokens is not None:
            reset_contextvars(**structlog_tokens)
        if cid_token is not None:
            correlation_id_var.reset(cid_token)

    async def _observe(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        correlation_id: str | None,
        id_header: tuple[bytes, bytes] | None,
        carrier: dict[str, str] | None,
    ) -> None:
        raw_method: str = scope["method"]
        method = RedMetrics.method_label(raw_method)
        root_path: str = scope.get("root_path", "")
        metrics = self._metrics
        tracer = self._tracer

        span: Span = INVALID_SPAN
        context_token = None  # set exactly when the span is ours to end
        if tracer is not None:
            span, context_token = self._start_span(tracer, scope, method, carrier)

        recorder_added = False
        if self._route_recorder is not None and "fastapi.telemetry" not in scope:
            scope["fastapi.telemetry"] = self._route_recorder(method)
            recorder_added = True
        if metrics is not None:
            metrics.request_started(scope, method)

        status = 0
        finished_at = 0.0

        async def observing_send(message: Message) -> None:
            nonlocal status, finished_at
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                if id_header is not None:
                    message["headers"] = [*message.get("headers", ()), id_header]
            elif kind == "http.response.body" and not message.get("more_body", False):
                await send(message)
                finished_at = perf_counter()
                return
            await send(message)

        error: BaseException | None = None
        started_at = perf_counter()
        try:
            await self.app(scope, receive, observing_send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            duration = (finished_at or perf_counter()) - started_at
            if status == 0:
                # No response started: the server error handler outside us answers 500,
                # or the client went away (499, nginx's convention).
                status = 499 if isinstance(error, asyncio.CancelledError) else 500
            route = route_template(scope, root_path)
            if recorder_added:
                del scope["fastapi.telemetry"]
            if metrics is not None:
                metrics.request_finished(scope, method, route, status, duration)
            span_context = span.get_span_context()
            if context_token is not None:
                _end_span(span, context_token, scope, method, raw_method, route, status, error)
            if self._request_line is not None:
                valid = span_context.is_valid
                self._request_line(
                    raw_method if method != "_OTHER" else method,
                    scope["path"],
                    route,
                    status,
                    round(duration * 1000.0, 3),
                    correlation_id,
                    format(span_context.trace_id, "032x") if valid else None,
                    format(span_context.span_id, "016x") if valid else None,
                )

    def _start_span(
        self, tracer: Tracer, scope: Scope, method: str, carrier: dict[str, str] | None
    ) -> tuple[Span, Token[Context] | None]:
        """The request's server span, and the context token when the span is ours to end.

        Called only with tracing on, so a request without tracing pays nothing for it.
        """
        if scope.get("fastapi.telemetry") is not None:
            return get_current_span(), None  # FastAPI's native server span: adopt it
        # A server span's parent comes from the request headers only: never from whatever
        # context the server (or an in-process caller) happens to run in.
        parent = self._propagator.extract(carrier) if carrier is not None else _ROOT_CONTEXT
        # Attributes go on once, at the end (_end_span): passed here, the SDK would
        # copy and validate them twice (sampler result, then span) for no benefit, since the
        # parent-based ratio sampler does not look at them.
        name = method if method != "_OTHER" else "HTTP"
        started = self._server_spans.start(name, parent) if self._server_spans is not None else None
        span = (
            started
            if started is not None
            else tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
        )
        return span, otel_context.attach(set_span_in_context(span, parent))


def _end_span(
    span: Span,
    context_token: Token[Context],
    scope: Scope,
    method: str,
    raw_method: str,
    route: str,
    status: int,
    error: BaseException | None,
) -> None:
    """End our server span; while it records, set its attributes, final name and status once."""
    if span.is_recording():
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
            "http.response.status_code": status,
        }
        client = scope.get("client")
        if client:
            attributes["client.address"] = client[0]
        if method == "_OTHER":
            attributes["http.request.method_original"] = raw_method
        if route != UNMATCHED:
            attributes["http.route"] = route
            span.update_name(f"{method if method != '_OTHER' else 'HTTP'} {route}")
        if error is not None and not isinstance(error, asyncio.CancelledError):
            attributes["error.type"] = type(error).__qualname__
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR))
        elif status >= 500:
            attributes["error.type"] = str(status)
            span.set_status(Status(StatusCode.ERROR))
        if isinstance(span, ServerSpan):
            span.set_own_attributes(attributes)
        else:
            span.set_attributes(attributes)
    span.end()
    if error is None:
        # On an exception the span stays current (ended) for the server's error line, like
        # the correlation ids (see ObservabilityMiddleware.__call__).
        otel_context.detach(context_token)


def _write_fields(
    access_log: AccessLog,
    method: str,
    path: str,
    route: str,
    status: int,
    duration_ms: float,
    correlation_id: str | None,
    trace_id: str | None,
    span_id: str | None,
) -> None:
    """The request line as fields, for a sink without a direct formatter."""
    fields: dict[str, Any] = {
        "event": "request",
        "method": method,
        "path": path,
        "route": route,
        "status": status,
        "duration_ms": duration_ms,
        "correlation_id": correlation_id,
    }
    if trace_id is not None:
        fields["trace_id"] = trace_id
        fields["span_id"] = span_id
    access_log.write(fields)


def _echoing_send(send: Send, id_header: tuple[bytes, bytes]) -> Send:
    async def echoing_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), id_header]
        await send(message)

    return echoing_send
