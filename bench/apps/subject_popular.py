"""The popular assembly as a subject: FastAPI plus the add-on a FastAPI user reaches for.

asgi-correlation-id; opentelemetry-instrumentation-fastapi at 100% sampling, batched to an
exporter that counts and discards, with the per-request ``send``/``receive`` internal
spans excluded (``exclude_spans``) so it makes one span per request like the others;
prometheus-fastapi-instrumentator; a per-address rate limit with ``limits`` on memory
storage in a dependency (what slowapi's ``@limiter.limit`` does underneath; slowapi itself
left the workspace's dependencies); a pyjwt
bearer dependency (``HTTPBearer``, ``jwt.decode`` with issuer, audience and ``exp``
required) with a permission check; and one ``BaseHTTPMiddleware`` that writes the
structlog JSON access line to a file and sets the security headers.
"""

import secrets
import time
from pathlib import Path
from typing import Annotated, Any


def popular(limit: int, tmp: str) -> Any:
    import jwt
    from apps._counting import CountingExporter
    from apps._popular import AccessLogMiddleware, handler
    from apps.subject import AUDIENCE, ISSUER, READ, SECURITY_HEADERS, Subject, count_lines
    from asgi_correlation_id import CorrelationIdMiddleware
    from fastapi import Depends, FastAPI, HTTPException, Request, Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from limits import parse
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from prometheus_client import CollectorRegistry
    from prometheus_fastapi_instrumentator import Instrumentator

    secret = secrets.token_urlsafe(32)
    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    registry = CollectorRegistry()
    limiter = FixedWindowRateLimiter(MemoryStorage())
    rate = parse(f"{limit}/minute")

    def rate_limit(request: Request) -> None:
        address = request.client.host if request.client else "unknown"
        if not limiter.hit(rate, address):
            raise HTTPException(429, "too many requests", {"Retry-After": "60"})

    bearer = HTTPBearer(auto_error=False)

    def require(permission: str) -> Any:
        def dependency(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> dict[str, Any]:
            if credentials is None:
                raise HTTPException(401, "not authenticated", {"WWW-Authenticate": "Bearer"})
            try:
                claims: dict[str, Any] = jwt.decode(
                    credentials.credentials,
                    secret,
                    algorithms=["HS256"],
                    audience=AUDIENCE,
                    issuer=ISSUER,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            except jwt.InvalidTokenError:
                raise HTTPException(401, "invalid token", {"WWW-Authenticate": "Bearer"}) from None
            if permission not in str(claims.get("scope", "")).split():
                raise HTTPException(403, "forbidden")
            return claims

        return dependency

    app = FastAPI()

    @app.get("/", dependencies=[Depends(rate_limit)])
    async def hello(claims: Annotated[dict[str, Any], Depends(require(READ))]) -> dict[str, str]:
        return {"hello": "world"}

    class HeadersAndAccessLog(AccessLogMiddleware):
        async def dispatch(self, request: Request, call_next: Any) -> Response:
            response = await super().dispatch(request, call_next)
            response.headers.update(SECURITY_HEADERS)
            return response

    app.add_middleware(HeadersAndAccessLog)
    app.add_middleware(CorrelationIdMiddleware)
    Instrumentator(registry=registry).instrument(app).expose(app)
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, exclude_spans=["send", "receive"]
    )

    async def mint(permission: str) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bench-user", "iat": now}
        claims |= {"exp": now + 86_400, "scope": permission, "jti": secrets.token_hex(8)}
        return jwt.encode(claims, secret, algorithm="HS256")

    def flush() -> None:
        provider.force_flush()
        handler.flush()

    def counts() -> dict[str, float]:
        samples = sum(
            sample.value
            for metric in registry.collect()
            if metric.name == "http_requests"
            for sample in metric.samples
            if sample.name == "http_requests_total" and sample.labels.get("handler") == "/"
        )
        return {
            "spans": float(exporter.exported),
            "metric_samples": float(samples),
            "log_lines": count_lines(Path(handler.baseFilename)),
        }

    return Subject("popular", app, True, mint, flush, counts)
