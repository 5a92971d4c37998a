"""A saasfw service built with ``saasfw.app`` doing the popular assembly's work, and more.

Per request to ``GET /``, as ``create_app`` composes it: health-probe dispatch; correlation
id (accepted or generated, echoed); one server span at 100% sampling batched to an exporter
that counts and discards; RED metrics; a JSON access line to a file; security headers;
CORS; request size limits; an in-memory per-address rate limit with ``RateLimit`` headers;
the security context; and a JWT bearer ``require("hello:read")`` resolved through RBAC
roles. Database and audit are switched off: the endpoint touches no database and a GET is
not audited, as in the popular assembly.

With ``BENCH_REDIS_URL`` and ``BENCH_OTLP_URL`` set (``bench_fullstack.py --fleet``) it is
the fleet shape instead: three instances declared, the rate limit and token revocation in
Redis, spans exported over OTLP/HTTP to the benchmark's receiver (which counts them).

For the cost breakdown (``bench/profile_fullstack.py --ablate``), ``BENCH_SAASFW_OFF``
lists pieces to leave out: component switches (``observability``, ``rate_limiting``,
``security_headers``, ``request_limits``, ``health``, ``problem_details``), ``auth`` (the
route is public) and ``fastapi_tracing`` (FastAPI's own native OpenTelemetry off).
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.request
from pathlib import Path
from typing import Annotated

from apps._counting import CountingExporter
from fastapi import APIRouter, Depends

from saasfw.app import AuthComponents, ServiceSettings, auth_components, create_app
from saasfw.observability import (
    AccessLogSettings,
    JsonLinesAccessLog,
    ObservabilitySettings,
    TracingSettings,
    setup_observability,
)
from saasfw.security import (
    Principal,
    RateLimiter,
    public,
    require,
)

TMP = Path(os.environ.get("BENCH_TMP", "/tmp"))
LOG_FILE = TMP / "saasfw-access.log"
LIMIT = "1000000000/minute"
OFF = {name for name in os.environ.get("BENCH_SAASFW_OFF", "").split(",") if name}
STATS = "/__bench__/stats"
TOKEN = "/__bench__/token"
REDIS_URL = os.environ.get("BENCH_REDIS_URL")
OTLP_URL = os.environ.get("BENCH_OTLP_URL")
FLEET: dict[str, object] = (
    {
        "deployment": {"instances": 3},
        "overrides": {"allow_audit_off": True},
        "redis_url": REDIS_URL,
        "redis_prefix": f"bench{os.getpid()}{secrets.token_hex(3)}",
    }
    if REDIS_URL
    else {}
)

settings = ServiceSettings.model_validate(
    {
        "service": "bench",
        "env": "production",
        "version": "1.0.0",
        "data_dir": TMP / "data",
        "components": {
            "database": False,
            "audit": False,
            **{name: False for name in OFF if name not in {"auth", "fastapi_tracing"}},
        },
        # Long enough for any run: the bench fetches one token and loads with it throughout.
        "security": {
            "tokens": {"access_ttl": 86_400},
            "jwt": {
                "issuer": "bench",
                "audiences": ["bench"],
                "algorithms": ["HS256"],
                "hmac_secret": secrets.token_urlsafe(32),
            },
            "rbac": {"roles": {"reader": {"permissions": ["hello:read"]}}},
            "rate_limit": {
                "default_limits": [LIMIT],
                "exempt_paths": ["/metrics", STATS, TOKEN],
                **({"storage_url": REDIS_URL} if REDIS_URL else {}),
            },
        },
        **FLEET,
    }
)

exporter = CountingExporter()
observability = setup_observability(
    ObservabilitySettings(
        service_name=settings.service,
        service_version=settings.version,
        environment=settings.env,
        excluded_paths=("/metrics", STATS, TOKEN),
        access_log=AccessLogSettings(file=LOG_FILE),
        tracing=TracingSettings(exporter="otlp", otlp_endpoint=f"{OTLP_URL}/v1/traces")
        if OTLP_URL
        else TracingSettings(),
    ),
    span_exporter=None if OTLP_URL else exporter,
)
limiter = RateLimiter(settings.security.rate_limit)
counters = {"authorized_calls": 0}

router = APIRouter()


if "auth" in OFF:

    @router.get("/", dependencies=[Depends(public)])
    async def hello_public() -> dict[str, str]:
        counters["authorized_calls"] += 1
        return {"hello": "world"}

else:

    @router.get("/")
    async def hello(
        principal: Annotated[Principal, Depends(require("hello:read"))],
    ) -> dict[str, str]:
        counters["authorized_calls"] += 1
        return {"hello": "world"}


@router.get(TOKEN, include_in_schema=False, dependencies=[Depends(public)])
async def token(auth: Annotated[AuthComponents, Depends(auth_components)]) -> dict[str, str]:
    assert auth.issuer is not None
    pair = await auth.issuer.issue("bench-user", tenant="bench", roles=["reader"])
    return {"access_token": pair.access_token}


@router.get(STATS, include_in_schema=False, dependencies=[Depends(public)])
def stats() -> dict[str, float]:
    assert observability.tracer_provider is not None
    assert isinstance(observability.access_log, JsonLinesAccessLog)
    assert observability.metrics is not None
    observability.tracer_provider.force_flush()
    observability.access_log.flush()
    requests = observability.metrics.registry.get_sample_value(
        "saasfw_http_requests_total", {"method": "GET", "route": "/", "status": "200"}
    )
    spans = float(exporter.exported)
    if OTLP_URL:  # counted where they arrive
        with urllib.request.urlopen(OTLP_URL, timeout=30) as resp:  # noqa: S310 - local
            spans = float(json.loads(resp.read())["spans"])
    return {
        "spans_exported": spans,
        "log_lines": observability.access_log.written,
        "metric_requests": requests or 0.0,
        "rate_limit_checks": limiter.checks,
        **counters,
    }


app = create_app(settings, routers=[router], observability=observability, rate_limiter=limiter)


if OFF & {"fastapi_tracing", "observability"}:
    # FastAPI's native OpenTelemetry. create_app turns it off while saasfw.observability
    # is on (its middleware makes the one server span); with observability switched off
    # here a tracer provider is still installed globally (this module, or another variant
    # in the same process), which would switch FastAPI's own tracing on and bill its spans
    # to the variant. ``fastapi_tracing`` measures older create_app versions.
    app._telemetry["tracing"] = False
