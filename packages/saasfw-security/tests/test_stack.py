"""SecurityMiddleware (one layer) answers exactly as the five layers it replaces."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from saasfw.security import RateLimiter, SecurityMiddleware, TrustedProxies, get_current_principal
from saasfw.security._ratelimit import RateLimitSettings
from saasfw.security.advanced import (
    CorsMiddleware,
    RequestLimitsMiddleware,
    SecurityContextMiddleware,
    SecurityHeadersMiddleware,
)
from saasfw.security.ratelimit import RateLimitMiddleware
from saasfw.security.settings import CorsSettings, RequestLimitsSettings, SecurityHeadersSettings

HEADERS = SecurityHeadersSettings()
CORS = CorsSettings(allow_origins=("https://app.example.com",), allow_credentials=True)
LIMITS = RequestLimitsSettings(max_body_bytes=64, max_header_count=20, max_header_bytes=2048)


def _limiter(headers: bool) -> RateLimiter:
    return RateLimiter(
        RateLimitSettings(default_limits=["6/minute"], exempt_paths=["/free"], headers=headers)
    )


def _endpoints() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, Any]:
        return {"hello": "world", "principal": get_current_principal()}

    @app.get("/free")
    async def free() -> dict[str, str]:
        return {"rate": "exempt"}

    @app.get("/docs/page")
    async def docs_page() -> dict[str, str]:
        return {"csp": "exempt"}

    @app.get("/own")
    async def own(response: Response) -> dict[str, str]:
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        return {"own": "header"}

    @app.get("/vary")
    async def vary(response: Response) -> dict[str, str]:
        response.headers.append("Vary", "Accept")
        response.headers.append("Vary", "Accept-Language")
        return {"varies": "yes"}

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"received": len(await request.body())}

    return app


def _layered(headers: bool) -> FastAPI:
    app = _endpoints()
    proxies = TrustedProxies(["10.0.0.0/8"])
    app.add_middleware(SecurityContextMiddleware)
    app.add_middleware(RateLimitMiddleware, limiter=_limiter(headers))
    app.add_middleware(RequestLimitsMiddleware, settings=LIMITS)
    app.add_middleware(CorsMiddleware, settings=CORS)
    app.add_middleware(SecurityHeadersMiddleware, settings=HEADERS, proxies=proxies)
    return app


def _combined(headers: bool) -> FastAPI:
    app = _endpoints()
    app.add_middleware(
        SecurityMiddleware,
        headers=HEADERS,
        proxies=TrustedProxies(["10.0.0.0/8"]),
        cors=CORS,
        limits=LIMITS,
        limiter=_limiter(headers),
    )
    return app


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(5):
        yield b"x" * 20


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/", {}),
    ("GET", "/", {"headers": {"Origin": "https://app.example.com"}}),
    ("GET", "/", {"headers": {"Origin": "https://evil.example"}}),
    (
        "OPTIONS",
        "/",
        {
            "headers": {
                "Origin": "https://app.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            }
        },
    ),
    ("OPTIONS", "/", {"headers": {"Origin": "https://evil.example"}}),
    ("POST", "/echo", {"content": b"0123456789"}),
    ("POST", "/echo", {"content": b"x" * 65}),
    ("POST", "/echo", {"content": b"x", "headers": {"Content-Length": "abc"}}),
    ("POST", "/echo", {"content": "chunks"}),
    ("GET", "/free", {"headers": {f"X-Filler-{n}": "v" for n in range(25)}}),
    ("GET", "/free", {"headers": {"X-Big": "v" * 3000}}),
    ("GET", "/docs/page", {}),
    ("GET", "/own", {}),
    ("GET", "/vary", {}),
    ("GET", "/free", {"headers": {"X-Forwarded-Proto": "https"}}),
    *[("GET", "/", {}) for _ in range(4)],  # the 6/minute budget runs out: 429
    ("GET", "/", {"headers": {"Origin": "https://app.example.com"}}),
    ("GET", "/free", {}),
]


Answer = tuple[int, list[tuple[str, str]], bytes]

_SECONDS_LEFT = re.compile(r"(;t=|^)\d+$")
_RETRY_IN_BODY = re.compile(rb"retry after \d+s")


def _timeless(name: str, value: str) -> str:
    """Seconds until the window resets move with the clock between the two runs."""
    if name in {"ratelimit", "retry-after"}:
        return _SECONDS_LEFT.sub(r"\1<seconds>", value)
    return value


async def _answers(app: FastAPI, client_host: str) -> list[Answer]:
    transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
    answers: list[Answer] = []
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        for method, path, options in REQUESTS:
            kwargs = dict(options)
            if kwargs.get("content") == "chunks":
                kwargs["content"] = _chunks()
            response = await client.request(method, path, **kwargs)
            pairs = response.headers.multi_items()
            headers = [(name, _timeless(name, value)) for name, value in pairs]
            body = _RETRY_IN_BODY.sub(b"retry after <seconds>s", response.content)
            answers.append((response.status_code, headers, body))
    return answers


@pytest.mark.parametrize("rate_headers", [False, True])
@pytest.mark.parametrize("client_host", ["203.0.113.9", "10.1.2.3"])
async def test_one_layer_answers_byte_for_byte_as_the_five(
    rate_headers: bool, client_host: str
) -> None:
    expected = await _answers(_layered(rate_headers), client_host)
    got = await _answers(_combined(rate_headers), client_host)
    statuses = [status for status, _, _ in expected]
    # The matrix really exercises every part (and the limits, CORS and 429 paths).
    assert {200, 400, 413, 431, 429} <= set(statuses)
    assert any(("strict-transport-security" in dict(h)) for _, h, _ in expected) is (
        client_host.startswith("10.")
    )
    for number, (want, have) in enumerate(zip(expected, got, strict=True)):
        assert have == want, f"request {number}: {REQUESTS[number][:2]}"


async def test_each_part_switches_off() -> None:
    app = _endpoints()
    app.add_middleware(SecurityMiddleware, security_context=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        response = await client.post("/echo", content=b"x" * 10_000)
    assert response.status_code == 200
    assert "x-content-type-options" not in response.headers
