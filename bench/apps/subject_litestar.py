"""Litestar with the same features, built from Litestar's own pieces where it has them.

``JWTAuth`` (HS256, issuer and audience checked, ``exp`` required) with a guard for the
permission; ``RateLimitConfig`` on Litestar's memory store; the Prometheus plugin's
middleware and ``PrometheusController``; the OpenTelemetry plugin at 100% sampling, batched
to an exporter that counts and discards, without the per-request ``send``/``receive``
internal spans; the structlog plugin's logging middleware writing one JSON line per
response to a file; asgi-correlation-id (Litestar has no correlation-id middleware; that
ASGI middleware is what its users add); the security headers through a ``before_send``
hook, so refusals carry them too (``response_headers`` only reach handler responses).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any


def litestar(limit: int, tmp: str) -> Any:
    import structlog
    from apps._counting import CountingExporter
    from apps.subject import AUDIENCE, ISSUER, READ, SECURITY_HEADERS, Subject, count_lines
    from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
    from litestar import Litestar, get
    from litestar.connection import ASGIConnection
    from litestar.datastructures import MutableScopeHeaders
    from litestar.exceptions import PermissionDeniedException
    from litestar.handlers import BaseRouteHandler
    from litestar.logging.config import StructLoggingConfig
    from litestar.middleware import DefineMiddleware
    from litestar.middleware.logging import LoggingMiddlewareConfig
    from litestar.middleware.rate_limit import RateLimitConfig
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
    from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
    from litestar.plugins.structlog import StructlogConfig, StructlogPlugin
    from litestar.security.jwt import JWTAuth, Token
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from prometheus_client import REGISTRY

    secret = secrets.token_urlsafe(32)
    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    log_path = Path(tmp) / "litestar-access.log"
    log_file = log_path.open("a")

    async def retrieve_user(token: Token, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        return token.sub

    def can_read(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        scopes = str(connection.auth.extras.get("scope", "")).split()
        if READ not in scopes:
            raise PermissionDeniedException("forbidden")

    jwt_auth = JWTAuth[str](
        token_secret=secret,
        retrieve_user_handler=retrieve_user,
        exclude=["/metrics"],
        accepted_issuers=[ISSUER],
        accepted_audiences=[AUDIENCE],
        require_claims=["exp", "iss", "aud", "sub"],
    )

    @get("/", guards=[can_read])
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    def add_correlation_id(_: Any, __: Any, event: dict[str, Any]) -> dict[str, Any]:
        event["correlation_id"] = correlation_id.get()
        return event

    logging_config = StructLoggingConfig(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_correlation_id,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=log_file),
    )
    structlog_plugin = StructlogPlugin(
        StructlogConfig(
            structlog_logging_config=logging_config,
            middleware_logging_config=LoggingMiddlewareConfig(
                request_log_fields=(),
                response_log_fields=("status_code",),
                exclude=["/metrics"],
            ),
        )
    )

    async def security_headers(message: Any, scope: Any) -> None:
        if message["type"] == "http.response.start":
            headers = MutableScopeHeaders.from_message(message)
            for name, value in SECURITY_HEADERS.items():
                headers[name] = value

    otel = OpenTelemetryConfig(tracer_provider=provider, exclude_spans=["send", "receive"])
    app = Litestar(
        route_handlers=[hello, PrometheusController],
        # Outermost first. The metrics middleware sits outside the rate limit and the JWT
        # middleware so that their refusals (raised as exceptions, answered by the app's
        # exception handler outside every middleware) are still counted; JWTAuth's own
        # ``on_app_init`` would put its middleware first, where refusals are not counted.
        middleware=[
            DefineMiddleware(CorrelationIdMiddleware),
            PrometheusConfig(app_name="bench", exclude=["/metrics"]).middleware,
            RateLimitConfig(rate_limit=("minute", limit), exclude=["/metrics"]).middleware,
            jwt_auth.middleware,
        ],
        plugins=[OpenTelemetryPlugin(otel), structlog_plugin],
        before_send=[security_headers],
    )

    async def mint(permission: str) -> str:
        return jwt_auth.create_token(
            identifier="bench-user",
            token_expiration=timedelta(days=1),
            token_issuer=ISSUER,
            token_audience=AUDIENCE,
            token_unique_jwt_id=secrets.token_hex(8),
            token_extras={"scope": permission},
        )

    def flush() -> None:
        provider.force_flush()
        log_file.flush()

    def counts() -> dict[str, float]:
        samples = sum(
            sample.value
            for metric in REGISTRY.collect()
            if metric.name == "litestar_requests"
            for sample in metric.samples
            if sample.name == "litestar_requests_total" and sample.labels.get("path") == "/"
        )
        return {
            "spans": float(exporter.exported),
            "metric_samples": float(samples),
            "log_lines": count_lines(log_path),
        }

    return Subject("litestar", app, True, mint, flush, counts)
