"""The rate limiter's counters appear at /metrics of a composed service."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from prometheus_client import CollectorRegistry

from saasfw.app import ServiceSettings, create_app
from saasfw.app._observability import observability_settings
from saasfw.app._ratelimit_metrics import register_rate_limit_metrics
from saasfw.observability import setup_observability
from saasfw.security import RateLimit, RateLimiter, RateLimitSettings, public


def _settings(tmp_path: Path, **rate_limit: object) -> ServiceSettings:
    return ServiceSettings.model_validate(
        {
            "service": "demo-service",
            "env": "test",
            "data_dir": str(tmp_path),
            "components": {"database": False, "audit": False},
            "security": {"rate_limit": {"default_limits": ["2/minute"], **rate_limit}},
        }
    )


def _app(settings: ServiceSettings, limiter: RateLimiter | None = None) -> FastAPI:
    router = APIRouter(dependencies=[Depends(public)])

    @router.post("/auth/login", dependencies=[Depends(RateLimit("5/minute", sensitive=True))])
    async def login() -> dict[str, str]:
        return {"ok": "login"}

    @router.get("/hello")
    async def hello() -> dict[str, str]:
        return {"ok": "hello"}

    obs = setup_observability(
        observability_settings(settings), registry=CollectorRegistry(), logging=False
    )
    return create_app(settings, routers=[router], observability=obs, rate_limiter=limiter)


def _client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith("saasfw_ratelimit_"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


async def test_metrics_show_decisions_and_a_healthy_storage(tmp_path: Path) -> None:
    app = _app(_settings(tmp_path))
    async with app.router.lifespan_context(app), _client(app) as client:
        statuses = [(await client.get("/hello")).status_code for _ in range(3)]
        samples = _samples((await client.get("/metrics")).text)
    assert statuses == [200, 200, 429]
    assert samples["saasfw_ratelimit_degraded"] == 0
    assert samples["saasfw_ratelimit_storage_errors_total"] == 0
    assert samples["saasfw_ratelimit_contention_total"] == 0
    assert samples["saasfw_ratelimit_evictions_total"] == 0
    assert samples['saasfw_ratelimit_decisions_total{outcome="allowed",policy="default"}'] == 2
    assert samples['saasfw_ratelimit_decisions_total{outcome="refused",policy="default"}'] == 1


async def test_metrics_show_a_degraded_storage_and_its_errors(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    settings = _settings(tmp_path)
    # Fails open globally (so /hello still answers); the sensitive login stays closed.
    limiter = RateLimiter(
        RateLimitSettings(
            storage_url=dead,
            default_limits=["100/minute"],
            on_storage_error="open",
            degraded_after=3,
        )
    )
    app = _app(settings, limiter)
    async with app.router.lifespan_context(app), _client(app) as client:
        hellos = [(await client.get("/hello")).status_code for _ in range(3)]
        login = await client.post("/auth/login")
        samples = _samples((await client.get("/metrics")).text)
    assert hellos == [200, 200, 200]
    assert login.status_code == 503
    assert int(login.headers["retry-after"]) >= 1
    assert login.headers["content-type"] == "application/problem+json"
    assert samples["saasfw_ratelimit_degraded"] == 1
    assert samples["saasfw_ratelimit_storage_errors_total"] == 3
    assert samples['saasfw_ratelimit_decisions_total{outcome="failed_open",policy="default"}'] == 4
    assert samples['saasfw_ratelimit_decisions_total{outcome="failed_closed",policy="route"}'] == 1


def test_one_collector_per_registry_follows_the_latest_limiter() -> None:
    registry = CollectorRegistry()
    first, second = RateLimiter(), RateLimiter()
    register_rate_limit_metrics(registry, first)
    register_rate_limit_metrics(registry, second)  # no duplicate-timeseries error
    assert registry.get_sample_value("saasfw_ratelimit_degraded") == 0
