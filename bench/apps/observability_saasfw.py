"""saasfw-observability doing the popular assembly's work: correlation ids, a JSON access
line per request to a file, RED metrics, and a span per request at 100% sampling batched
to an exporter that discards.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from apps._counting import CountingExporter
from fastapi import FastAPI

from saasfw.observability import (
    AccessLogSettings,
    JsonLinesAccessLog,
    ObservabilitySettings,
    setup_observability,
)

LOG_FILE = Path(os.environ.get("BENCH_TMP", "/tmp")) / "saasfw-access.log"

exporter = CountingExporter()
settings = ObservabilitySettings(
    service_name="bench",
    environment="production",
    excluded_paths=("/metrics", "/__bench__/stats"),
    access_log=AccessLogSettings(file=LOG_FILE),
)
observability = setup_observability(settings, span_exporter=exporter)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with observability.lifespan():
        yield


# FastAPI's native OpenTelemetry would add its own server and operation spans: the
# middleware's span is the one span per request.
app = FastAPI(lifespan=lifespan, telemetry={"tracing": False})


@app.get("/")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


@app.get("/__bench__/stats", include_in_schema=False)
def stats() -> dict[str, float]:
    assert observability.tracer_provider is not None
    assert isinstance(observability.access_log, JsonLinesAccessLog)
    assert observability.metrics is not None
    observability.tracer_provider.force_flush()
    observability.access_log.flush()
    requests = observability.metrics.registry.get_sample_value(
        "saasfw_http_requests_total", {"method": "GET", "route": "/", "status": "200"}
    )
    return {
        "spans_exported": exporter.exported,
        "log_lines": observability.access_log.written,
        "metric_requests": requests or 0.0,
    }


observability.install(app)
