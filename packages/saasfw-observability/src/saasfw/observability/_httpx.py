"""Outgoing httpx calls: a client span per call, W3C trace context and the correlation id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from saasfw.observability._context import correlation_id_var

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer, TracerProvider

_TRACER_NAME = "saasfw.observability.httpx"


def _span_attributes(request: httpx.Request) -> dict[str, Any]:
    url = request.url
    # url.full without userinfo and without the query: both can carry credentials.
    attributes: dict[str, Any] = {
        "http.request.method": request.method,
        "url.full": f"{url.scheme}://{url.host}{':' + str(url.port) if url.port else ''}{url.path}",
        "server.address": url.host,
    }
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    if port is not None:
        attributes["server.port"] = port
    return attributes


class _Outgoing:
    """What both transports share: header injection and the span around the call."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None,
        correlation_header: str | None,
    ) -> None:
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self.tracer: Tracer = provider.get_tracer(_TRACER_NAME)
        self.correlation_header = correlation_header

    def prepare(self, request: httpx.Request) -> None:
        if self.correlation_header is not None:
            correlation_id = correlation_id_var.get()
            if correlation_id is not None and self.correlation_header not in request.headers:
                request.headers[self.correlation_header] = correlation_id

    def start(self, request: httpx.Request) -> trace.Span:
        span = self.tracer.start_span(
            request.method, kind=SpanKind.CLIENT, attributes=_span_attributes(request)
        )
        # Inject the client span's context: the server's span becomes its child.
        propagate.inject(request.headers, context=trace.set_span_in_context(span))
        return span

    @staticmethod
    def finish(
        span: trace.Span, response: httpx.Response | None, error: BaseException | None
    ) -> None:
        if response is not None:
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 400:
                span.set_attribute("error.type", str(response.status_code))
                span.set_status(Status(StatusCode.ERROR))
        if error is not None:
            span.set_attribute("error.type", type(error).__qualname__)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class TracingTransport(httpx.AsyncBaseTransport):
    """Wrap an async httpx transport: one CLIENT span per request, headers propagated.

    The span is a child of the current span (the server span while handling a request),
    ends when the response headers arrive or the call fails, and its context goes out in
    ``traceparent``/``tracestate`` (the global propagator, W3C by default). The current
    correlation id goes out in ``correlation_header`` unless the request already has one.
    URLs are recorded without userinfo or query string.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        correlation_header: str | None = "X-Request-ID",
    ) -> None:
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._outgoing = _Outgoing(tracer_provider, correlation_header)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._outgoing.prepare(request)
        span = self._outgoing.start(request)
        try:
            response = await self._transport.handle_async_request(request)
        except BaseException as exc:
            self._outgoing.finish(span, None, exc)
            raise
        self._outgoing.finish(span, response, None)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


class SyncTracingTransport(httpx.BaseTransport):
    """The blocking-client counterpart of :class:`TracingTransport`."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        correlation_header: str | None = "X-Request-ID",
    ) -> None:
        self._transport = transport if transport is not None else httpx.HTTPTransport()
        self._outgoing = _Outgoing(tracer_provider, correlation_header)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._outgoing.prepare(request)
        span = self._outgoing.start(request)
        try:
            response = self._transport.handle_request(request)
        except BaseException as exc:
            self._outgoing.finish(span, None, exc)
            raise
        self._outgoing.finish(span, response, None)
        return response

    def close(self) -> None:
        self._transport.close()


def create_async_client(
    *,
    tracer_provider: TracerProvider | None = None,
    correlation_header: str | None = "X-Request-ID",
    transport: httpx.AsyncBaseTransport | None = None,
    **kwargs: Any,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose calls are traced and carry the correlation id.

    ``transport`` (default: httpx's own) is wrapped in :class:`TracingTransport`; every
    other keyword goes to ``httpx.AsyncClient``.
    """
    return httpx.AsyncClient(
        transport=TracingTransport(
            transport, tracer_provider=tracer_provider, correlation_header=correlation_header
        ),
        **kwargs,
    )


def create_client(
    *,
    tracer_provider: TracerProvider | None = None,
    correlation_header: str | None = "X-Request-ID",
    transport: httpx.BaseTransport | None = None,
    **kwargs: Any,
) -> httpx.Client:
    """The blocking counterpart of :func:`create_async_client`."""
    return httpx.Client(
        transport=SyncTracingTransport(
            transport, tracer_provider=tracer_provider, correlation_header=correlation_header
        ),
        **kwargs,
    )
