"""A non-critical check that fails shows DEGRADED and keeps its group (and the pod) ready."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from saasfw.k8s import HealthProbeMiddleware, HealthRegistry, Status

pytestmark = pytest.mark.asyncio


class BrokerGone(Exception):
    """What a broker client raises while the broker is away."""


async def _fine() -> None:
    return None


async def _broker() -> None:
    raise BrokerGone


def _app(registry: HealthRegistry) -> FastAPI:
    app = FastAPI()
    app.add_middleware(HealthProbeMiddleware, registry=registry, prefix="/health")
    return app


async def test_a_failing_non_critical_check_is_degraded_and_ready() -> None:
    registry = HealthRegistry(cache_ttl=0)
    registry.add("database", _fine)
    registry.add("broker", _broker, critical=False)
    report = await registry.check_group("ready")
    assert report.status is Status.UP
    assert {r.name: r.status for r in report.checks} == {
        "database": Status.UP,
        "broker": Status.DEGRADED,
    }
    transport = httpx.ASGITransport(app=_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ready = await client.get("/health/ready")
        summary = await client.get("/health")
    assert ready.status_code == 200
    body = ready.json()
    assert body["degraded"] == ["broker"]
    assert body["checks"]["broker"] == {
        "status": "DEGRADED",
        "duration_ms": body["checks"]["broker"]["duration_ms"],
        "cached": False,
        "error": "BrokerGone",
    }
    assert summary.status_code == 200
    assert summary.json()["groups"]["ready"] == "UP"


async def test_a_failing_critical_check_still_takes_the_pod_out() -> None:
    registry = HealthRegistry(cache_ttl=0)
    registry.add("database", _broker)
    registry.add("broker", _fine, critical=False)
    transport = httpx.ASGITransport(app=_app(registry))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["status"] == "DOWN"
    assert "degraded" not in ready.json()
