"""The popular assembly: asgi-correlation-id, structlog access logging in BaseHTTPMiddleware,
prometheus-fastapi-instrumentator and opentelemetry-instrumentation-fastapi (100% sampling,
batched to an exporter that discards), all writing what saasfw-observability writes.
"""

from __future__ import annotations

from apps._popular import AccessLogMiddleware, CountedFileHandler, exporter, handler, provider
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import REGISTRY
from prometheus_fastapi_instrumentator import Instrumentator

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
        "log_lines": CountedFileHandler.lines,
        "metric_requests": requests,
    }


app.add_middleware(AccessLogMiddleware)
app.add_middleware(CorrelationIdMiddleware)
Instrumentator().instrument(app).expose(app)
FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
