"""saasfw as a subject, in two shapes, each built with ``saasfw.app.create_app`` as a user would.

``single``: the whole chassis in one process with memory stores (rate limits, token
revocation): health-probe dispatch, correlation id, one server span at 100% sampling
batched to an exporter that counts and discards, RED metrics, a JSON access line to a
file, security headers, CORS, request size limits, the rate limit, the security context
and ``require("hello:read")`` through RBAC roles on an HS256 bearer token. Database and
audit are off: the route touches no database and a GET is not audited.

``fleet``: the same service deployed as a fleet: ``redis_url`` set, so rate limits and
token revocation live in Redis, shared by every instance, and spans go out with the OTLP
exporter (protobuf over HTTP) to a receiver the benchmark runs (``BENCH_OTLP_URL``).
"""

import os
import secrets
from pathlib import Path
from typing import Annotated, Any

TOKEN = "/__bench__/token"


def _settings(limit: int, tmp: str, redis_url: str | None) -> Any:
    from saasfw.app import ServiceSettings

    fleet = redis_url is not None
    return ServiceSettings.model_validate(
        {
            "service": "bench",
            "env": "production",
            "version": "1.0.0",
            "data_dir": Path(tmp) / "data",
            "deployment": {"instances": 3 if fleet else 1},
            "overrides": {"allow_audit_off": True},
            "components": {"database": False, "audit": False},
            "redis_url": redis_url,
            "redis_prefix": f"bench{os.getpid()}{secrets.token_hex(3)}" if fleet else None,
            "security": {
                "tokens": {"access_ttl": 86_400},
                "jwt": {
                    "issuer": "bench",
                    "audiences": ["bench"],
                    "algorithms": ["HS256"],
                    "hmac_secret": secrets.token_urlsafe(32),
                },
                "rbac": {
                    "roles": {
                        "reader": {"permissions": ["hello:read"]},
                        "writer": {"permissions": ["other:write"]},
                    }
                },
                "rate_limit": {
                    "default_limits": [f"{limit}/minute"],
                    "exempt_paths": ["/metrics", TOKEN],
                    # Under callgrind the app runs some 50 times slower: the default 0.25 s
                    # bound on a Redis round trip would fail requests closed (503). The
                    # bound's value changes no instruction on the path that answers 200.
                    "storage_timeout": 5.0,
                },
            },
        }
    )


def _build(name: str, limit: int, tmp: str, redis_url: str | None) -> Any:
    from apps._counting import CountingExporter
    from apps.subject import READ, Subject, count_lines
    from fastapi import APIRouter, Depends

    from saasfw.app import AuthComponents, auth_components, create_app
    from saasfw.observability import (
        AccessLogSettings,
        JsonLinesAccessLog,
        ObservabilitySettings,
        TracingSettings,
        setup_observability,
    )
    from saasfw.security import Principal, public, require

    settings = _settings(limit, tmp, redis_url)
    log_file = Path(tmp) / f"saasfw-{name}-access.log"
    otlp = os.environ.get("BENCH_OTLP_URL")
    if redis_url is not None:
        if not otlp:
            raise SystemExit("saasfw-fleet needs BENCH_OTLP_URL (the benchmark's receiver)")
        tracing = TracingSettings(exporter="otlp", otlp_endpoint=f"{otlp}/v1/traces")
        exporter = None
    else:
        tracing = TracingSettings()
        exporter = CountingExporter()
    observability = setup_observability(
        ObservabilitySettings(
            service_name=settings.service,
            service_version=settings.version,
            environment=settings.env,
            excluded_paths=("/metrics", TOKEN),
            access_log=AccessLogSettings(file=log_file),
            tracing=tracing,
        ),
        span_exporter=exporter,
    )
    router = APIRouter()

    @router.get("/")
    async def hello(
        principal: Annotated[Principal, Depends(require(READ))],
    ) -> dict[str, str]:
        return {"hello": "world"}

    @router.get(TOKEN, include_in_schema=False, dependencies=[Depends(public)])
    async def token(
        role: str, auth: Annotated[AuthComponents, Depends(auth_components)]
    ) -> dict[str, str]:
        assert auth.issuer is not None
        pair = await auth.issuer.issue("bench-user", tenant="bench", roles=[role])
        return {"access_token": pair.access_token}

    app = create_app(settings, routers=[router], observability=observability)
    subject = Subject(name, app, True, redis_url=redis_url)
    roles = {READ: "reader"}

    async def mint(permission: str) -> str:
        from apps.drive import get_json

        role = roles.get(permission, "writer")
        return str((await get_json(app, f"{TOKEN}?role={role}"))["access_token"])

    def flush() -> None:
        assert observability.tracer_provider is not None
        assert isinstance(observability.access_log, JsonLinesAccessLog)
        observability.tracer_provider.force_flush()
        observability.access_log.flush()

    def counts() -> dict[str, float]:
        assert observability.metrics is not None
        samples = sum(
            sample.value
            for metric in observability.metrics.registry.collect()
            for sample in metric.samples
            if sample.name == "saasfw_http_requests_total"
        )
        out = {"metric_samples": samples, "log_lines": count_lines(log_file)}
        if exporter is not None:
            out["spans"] = float(exporter.exported)
        return out

    subject.mint, subject.flush, subject.counts = mint, flush, counts
    return subject


def single(limit: int, tmp: str) -> Any:
    return _build("saasfw-single", limit, tmp, None)


def fleet(limit: int, tmp: str) -> Any:
    url = os.environ.get("BENCH_REDIS_URL")
    if not url:
        raise SystemExit("saasfw-fleet needs BENCH_REDIS_URL")
    return _build("saasfw-fleet", limit, tmp, url)
