"""Probe endpoints: status codes, availability gating, bypass of the app's own middleware."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from saasfw.k8s import HealthProbeMiddleware, HealthRegistry, Lifecycle, health_app


class RejectEverything:
    """Stands in for authentication / rate limiting: it refuses every request it sees."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 401, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _ok() -> None:
    return None


async def _down() -> None:
    raise ConnectionError("nope")


def _app(registry: HealthRegistry, lifecycle: Lifecycle | None) -> tuple[FastAPI, list[str]]:
    app = FastAPI()
    seen: list[str] = []

    @app.get("/orders")
    async def orders() -> dict[str, str]:
        return {"ok": "yes"}

    class Recorder(RejectEverything):
        def __init__(self, inner: ASGIApp) -> None:
            super().__init__(inner)
            self.seen = seen

    app.add_middleware(Recorder)
    app.add_middleware(HealthProbeMiddleware, registry=registry, lifecycle=lifecycle)
    return app, seen


@pytest.fixture
def ready_lifecycle() -> Lifecycle:
    lifecycle = Lifecycle()
    lifecycle.mark_ready()
    return lifecycle


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_probes_bypass_inner_middleware(ready_lifecycle: Lifecycle) -> None:
    app, seen = _app(HealthRegistry(), ready_lifecycle)
    async with _client(app) as client:
        for path in ("/health", "/health/live", "/health/ready", "/health/startup"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert response.headers["cache-control"] == "no-store"
        assert (await client.get("/orders")).status_code == 401
    assert seen == ["/orders"]


async def test_group_bodies_carry_per_check_status_and_duration(
    ready_lifecycle: Lifecycle,
) -> None:
    registry = HealthRegistry()
    registry.add("db", _ok)
    registry.add("cache", _down, groups=("ready", "cache-group"))
    app, _ = _app(registry, ready_lifecycle)
    async with _client(app) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "DOWN"
        assert body["group"] == "ready"
        assert body["availability"] == "ready"
        assert body["checks"]["db"]["status"] == "UP"
        assert body["checks"]["cache"] == {
            "status": "DOWN",
            "duration_ms": body["checks"]["cache"]["duration_ms"],
            "cached": False,
            "error": "ConnectionError",
        }
        assert isinstance(body["checks"]["db"]["duration_ms"], float)
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/cache-group")).status_code == 503
        summary = await client.get("/health")
        assert summary.status_code == 503
        assert summary.json()["groups"] == {
            "cache-group": "DOWN",
            "live": "UP",
            "ready": "DOWN",
            "startup": "UP",
        }


async def test_availability_gates_ready_and_startup_but_never_live() -> None:
    lifecycle = Lifecycle()
    app, _ = _app(HealthRegistry(), lifecycle)
    async with _client(app) as client:
        codes = {p: (await client.get(f"/health/{p}")).status_code for p in ("live", "ready")}
        assert codes == {"live": 200, "ready": 503}
        assert (await client.get("/health/startup")).status_code == 503
        lifecycle.mark_ready()
        assert (await client.get("/health/ready")).status_code == 200
        assert (await client.get("/health/startup")).status_code == 200
        lifecycle.begin_drain()
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["availability"] == "draining"
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health")).status_code == 503


async def test_unknown_group_method_and_head(ready_lifecycle: Lifecycle) -> None:
    app, _ = _app(HealthRegistry(), ready_lifecycle)
    async with _client(app) as client:
        missing = await client.get("/health/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        body = missing.json()
        # Probes answer before any correlation-id middleware: they make the id themselves.
        assert body.pop("correlation_id") == missing.headers["x-request-id"]
        assert body == {
            "type": "urn:saasfw:problem:http.not_found",
            "title": "Not Found",
            "status": 404,
            "code": "http.not_found",
            "detail": "no health group named 'nope'",
            "instance": "/health/nope",
        }
        post = await client.post("/health/ready")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"
        assert post.json()["status"] == 405
        assert (await client.get("/health/ready")).headers["content-type"] == "application/json"
        head = await client.head("/health/ready")
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) > 0
        # A path that only shares the prefix is the app's, not a probe.
        assert (await client.get("/healthcheck")).status_code == 401


async def test_standalone_health_app_with_custom_prefix() -> None:
    registry = HealthRegistry()
    app = health_app(registry, prefix="/_probe")
    async with _client(app) as client:
        assert (await client.get("/_probe/ready")).status_code == 200
        assert (await client.get("/_probe")).json()["availability"] == "ready"
        assert (await client.get("/elsewhere")).status_code == 404


async def test_the_summary_runs_each_check_once(ready_lifecycle: Lifecycle) -> None:
    calls: list[str] = []

    async def counted() -> None:
        calls.append("db")

    registry = HealthRegistry(cache_ttl=0.0)
    registry.add("db", counted, groups=("ready", "startup", "deep"))
    app, _ = _app(registry, ready_lifecycle)
    async with _client(app) as client:
        summary = await client.get("/health")
    assert summary.status_code == 200
    assert summary.json()["groups"] == {"deep": "UP", "live": "UP", "ready": "UP", "startup": "UP"}
    assert calls == ["db"]
