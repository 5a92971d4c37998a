"""The popular full-stack assembly: every feature from the library a FastAPI user reaches for.

asgi-correlation-id; a structlog JSON access line (to a file through a stdlib
``FileHandler``) written from a ``BaseHTTPMiddleware``; prometheus-fastapi-instrumentator;
opentelemetry-instrumentation-fastapi at 100% sampling, batched to an exporter that counts
and discards; a per-address limit with ``limits`` on in-memory storage, checked in a
dependency (what slowapi's ``@limiter.limit`` does underneath; slowapi left the workspace);
a pyjwt bearer dependency (``HTTPBearer`` + ``jwt.decode`` with issuer, audience and
``exp`` required) and a permission check on the token's scopes.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Annotated, Any

import jwt
from apps._popular import AccessLogMiddleware, CountedFileHandler, exporter, handler, provider
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import REGISTRY
from prometheus_fastapi_instrumentator import Instrumentator

# Far above what a run reaches: every request is checked and counted, none refused.
LIMIT = "1000000000/minute"
SECRET = secrets.token_urlsafe(32)
ISSUER = AUDIENCE = "bench"

limiter = FixedWindowRateLimiter(MemoryStorage())
rate = parse(LIMIT)
counters = {"rate_limit_checks": 0, "authorized_calls": 0}


def rate_limit(request: Request) -> None:
    counters["rate_limit_checks"] += 1
    if not limiter.hit(rate, request.client.host if request.client else "unknown"):
        raise HTTPException(429, "too many requests", {"Retry-After": "60"})


bearer = HTTPBearer(auto_error=False)


def require(permission: str) -> Callable[..., dict[str, Any]]:
    def dependency(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> dict[str, Any]:
        if credentials is None:
            raise HTTPException(401, "not authenticated", {"WWW-Authenticate": "Bearer"})
        try:
            claims: dict[str, Any] = jwt.decode(
                credentials.credentials,
                SECRET,
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
async def hello(
    claims: Annotated[dict[str, Any], Depends(require("hello:read"))],
) -> dict[str, str]:
    counters["authorized_calls"] += 1
    return {"hello": "world"}


@app.get("/__bench__/token", include_in_schema=False)
def token() -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "bench-user", "iat": now}
    claims |= {"exp": now + 86_400, "scope": "hello:read"}
    return {"access_token": jwt.encode(claims, SECRET, algorithm="HS256")}


@app.get("/__bench__/stats", include_in_schema=False)
def stats() -> dict[str, float]:
    provider.force_flush()
    handler.flush()
    requests = sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "http_requests"
        for sample in metric.samples
        if sample.name == "http_requests_total"
        and sample.labels.get("handler") == "/"
        and sample.labels.get("status") == "2xx"
    )
    return {
        "spans_exported": exporter.exported,
        "log_lines": CountedFileHandler.lines,
        "metric_requests": requests,
        **counters,
    }


app.add_middleware(AccessLogMiddleware)
app.add_middleware(CorrelationIdMiddleware)
Instrumentator().instrument(app).expose(app)
FastAPIInstrumentor.instrument_app(app, tracer_provider=provider)
