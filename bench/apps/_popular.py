"""What both popular-assembly bench apps share: tracing to a counting exporter, structlog
JSON access lines through a counted stdlib FileHandler, and the BaseHTTPMiddleware that
writes them (the way those libraries' docs assemble it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from apps._counting import CountingExporter
from asgi_correlation_id import correlation_id
from fastapi import Request, Response
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from starlette.middleware.base import BaseHTTPMiddleware

LOG_FILE = Path(os.environ.get("BENCH_TMP", "/tmp")) / "popular-access.log"

exporter = CountingExporter()
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(exporter))
trace.set_tracer_provider(provider)


class CountedFileHandler(logging.FileHandler):
    lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        CountedFileHandler.lines += 1


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
handler = CountedFileHandler(LOG_FILE)
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
