"""The popular assembly: asgi-correlation-id, structlog access logging in BaseHTTPMiddleware,
prometheus-fastapi-instrumentator and opentelemetry-instrumentation-fastapi (100% sampling,
batched to an exporter that discards), all writing what saasfw-observability writes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from apps._counting import CountingExporter
from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI, Request, Response
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import REGISTRY
from prometheus_fastapi_instrumentator import Instrumentator
from starlette.middleware.base import BaseHTTPMiddleware

LOG_FILE = Path(os.environ.get("BENCH_TMP", "/tmp")) / "popular-access.log"

exporter = CountingExporter()
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(exporter))
trace.set_tracer_provider(provider)


class _Counted(logging.FileHandler):
    lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        _Counted.lines += 1


structlog.configure(
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)
handler = _Counted(LOG_FILE)
handler.setFormatter(
    structlog.stdlib.ProcessorFormatter(processor=structlog.processors.JSONRenderer())
)
access_logger = logging.getLogger("access")
access_logger.addHandler(handler)
access_logger.setLevel(logging.INFO)
access_logger.propagate = False
log = structlog.get_logger("access")


class AccessLogMiddleware(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        context = trace.get_current_span().get_span_context()
        route = request.scope.get("route")
        log.info(
            "request",
            method=request.method,
            path=request.url.path,
            route=getattr(route, "path", None),
            status=response.status_code,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            correlation_id=correlation_id.get(),
            trace_id=format(context.trace_id, "032x"),
            span_id=format(context.span_id, "016x"),
        )
        return response


app = FastAPI()


@app.get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


@app.get("/__bench__/stats", include_in_schema=False)
def stats() -> dict[str, float]:
    provider.force_flush()
    handler.flush()
    requests = sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "http_requests"
        for sample in metric.samples
        if sample.name == "http_requests_total" and sample.labels.get("handler") == "/"
    )
    return {
        "spans_exported": exporter.exported,
        "log_lines": _Counted.lines,
        "metric_requests": requests,
    }


app.add_middleware(AccessLogMiddleware)
app.add_middleware(CorrelationIdMiddleware)
Instrumentator().instrument(app).expose(app)
FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
