"""Acceptance 3: a private Redis really stopped under load, then started again.

The shared Redis is never touched: the test starts its own ``redis-server`` on a free port
in a temporary directory, kills it mid-load and starts it again on the same port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi import Depends, FastAPI, Response

from saasfw.security._errors import SecurityError
from saasfw.security._ratelimit import RateLimiter, RateLimitSettings
from saasfw.security._ratelimit_asgi import RateLimit, RateLimitMiddleware

if TYPE_CHECKING:
    from conftest import PrivateRedis

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
async def limiter(private_redis: PrivateRedis) -> AsyncIterator[RateLimiter]:
    settings = RateLimitSettings.model_validate(
        {
            "storage_url": private_redis.url,
            "key_prefix": "outage",
            # A stopped Redis refuses connections at once; the timeout only has to ride out
            # a busy machine's latency spikes while Redis is up.
            "storage_timeout": 1.0,
            "retry_storage_after": 0.3,
            "default_limits": ["10000/minute"],
            # The global default fails open, so each route's own mode decides below.
            "on_storage_error": "open",
        }
    )
    limiter = RateLimiter(settings)
    yield limiter
    await limiter.aclose()


def _app(limiter: RateLimiter) -> FastAPI:
    app = FastAPI()

    @app.get(
        "/closed",
        dependencies=[Depends(RateLimit("10000/minute", on_storage_error="closed"))],
    )
    async def closed() -> dict[str, str]:
        return {"route": "closed"}

    @app.get("/open", dependencies=[Depends(RateLimit("10000/minute", on_storage_error="open"))])
    async def fail_open() -> dict[str, str]:
        return {"route": "open"}

    @app.get("/strict", dependencies=[Depends(RateLimit("3/minute", key="global"))])
    async def strict() -> dict[str, str]:
        return {"route": "strict"}

    @app.get("/healthz")
    async def health(response: Response) -> dict[str, str]:
        try:
            await limiter.health_check()
        except SecurityError:
            response.status_code = 503
            return {"rate_limit": "degraded"}
        return {"rate_limit": "ok"}

    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    return app


@dataclass
class Load:
    seen: dict[str, list[httpx.Response]] = field(default_factory=dict)
    running: bool = True

    async def drive(self, client: httpx.AsyncClient, path: str) -> None:
        while self.running:
            response = await client.get(path)
            self.seen.setdefault(path, []).append(response)
            await asyncio.sleep(0.005)

    def take(self) -> dict[str, list[httpx.Response]]:
        taken, self.seen = self.seen, {}
        return taken


async def _eventually(predicate: object, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def _answered(load: Load, at_least: int = 3, within: float = 60.0) -> None:
    """Wait until both routes have answered a few times (a busy machine is slow to start)."""

    async def enough() -> bool:
        return all(len(load.seen.get(path, [])) >= at_least for path in ("/closed", "/open"))

    await _eventually(enough, within)


async def test_redis_outage_and_recovery_under_load(
    private_redis: PrivateRedis, limiter: RateLimiter
) -> None:
    import redis.asyncio

    transport = httpx.ASGITransport(app=_app(limiter), client=("203.0.113.50", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        load = Load()
        workers = [
            asyncio.create_task(load.drive(client, path)) for path in ("/closed", "/open") * 3
        ]
        try:
            await _answered(load)
            before = load.take()
            assert (await client.get("/healthz")).status_code == 200

            private_redis.stop()  # really gone: the process is killed mid-load

            async def degraded() -> bool:
                return limiter.degraded

            await _eventually(degraded, within=60.0)
            load.take()  # answered while the outage was being noticed
            await _answered(load)
            during = load.take()
            health_down = await client.get("/healthz")
            assert limiter.degraded

            private_redis.start()  # same port, empty dataset

            async def recovered() -> bool:
                return (await client.get("/closed")).status_code == 200

            await _eventually(recovered, within=60.0)
            await asyncio.sleep(0.05)
            load.take()  # decided before recovery; only what follows must be normal
            await _answered(load)
            after = load.take()
        finally:
            load.running = False
            await asyncio.gather(*workers)

        strict = [(await client.get("/strict")).status_code for _ in range(4)]
        health_up = await client.get("/healthz")

    def statuses(batch: dict[str, list[httpx.Response]], path: str) -> set[int]:
        return {r.status_code for r in batch.get(path, [])}

    everything = [r for batch in (before, during, after) for rs in batch.values() for r in rs]
    assert all(r.status_code != 500 for r in everything)
    assert statuses(before, "/closed") == {200}
    assert statuses(before, "/open") == {200}
    # During the outage: fail-closed answers 503 with Retry-After, fail-open serves.
    assert statuses(during, "/open") == {200}
    closed_down = [r for r in during["/closed"] if r.status_code != 200]
    assert closed_down, "fail-closed route never refused while Redis was down"
    assert {r.status_code for r in closed_down} == {503}
    assert all(int(r.headers["retry-after"]) >= 1 for r in closed_down)
    assert health_down.status_code == 503
    assert health_down.json() == {"rate_limit": "degraded"}
    assert limiter.storage_errors > 0
    # Limits resume without a restart and count exactly again.
    assert statuses(after, "/closed") == {200}
    assert statuses(after, "/open") == {200}
    assert strict == [200, 200, 200, 429]
    assert health_up.status_code == 200
    assert not limiter.degraded
    # Every key the limiter wrote to the new server has a TTL.
    client_redis = redis.asyncio.Redis.from_url(private_redis.url)
    try:
        keys = [k async for k in client_redis.scan_iter(match="outage:*")]
        ttls = [await client_redis.ttl(k) for k in keys]
    finally:
        await client_redis.aclose()
    assert keys
    assert all(ttl > 0 for ttl in ttls), ttls


async def test_an_allowed_check_makes_one_script_call_unless_its_figures_are_read(
    private_redis: PrivateRedis,
) -> None:
    """Issue 21: no second round trip for the window's figures when nobody reads them."""
    from saasfw.security import RateLimitPolicy

    settings = RateLimitSettings.model_validate(
        {"storage_url": private_redis.url, "key_prefix": "calls", "storage_timeout": 5.0}
    )
    limiter = RateLimiter(settings)
    policy = RateLimitPolicy("calls", "3/minute")
    scope = {"type": "http", "client": ("192.0.2.7", 1234), "headers": []}
    try:
        await limiter.check(policy, scope, figures=False)  # loads the scripts
        before = private_redis.script_calls()
        assert (await limiter.check(policy, scope, figures=False)).allowed
        assert private_redis.script_calls() - before == 1
        before = private_redis.script_calls()
        counted = await limiter.check(policy, scope, figures=True)
        assert counted.allowed
        assert counted.remaining == 0  # 3/minute: the third hit leaves none
        assert private_redis.script_calls() - before >= 2  # the figures cost more
        refused = await limiter.check(policy, scope, figures=False)
        assert not refused.allowed
        assert refused.reset_after >= 1  # a refusal always carries its Retry-After
    finally:
        await limiter.aclose()


@pytest.mark.parametrize("headers", [False, True], ids=["no-headers", "headers"])
async def test_the_one_security_layer_reads_the_figures_only_for_headers(
    private_redis: PrivateRedis, headers: bool
) -> None:
    """Issue 21: through SecurityMiddleware, an allowed request costs one script call
    unless RateLimit headers are sent (found making two in the fleet benchmark)."""
    from fastapi import FastAPI

    from saasfw.security import SecurityMiddleware

    settings = RateLimitSettings.model_validate(
        {
            "storage_url": private_redis.url,
            "key_prefix": f"stack-{headers}",
            "storage_timeout": 5.0,
            "default_limits": ["100/minute"],
            "headers": headers,
        }
    )
    limiter = RateLimiter(settings)
    app = FastAPI()

    @app.get("/")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    app.add_middleware(SecurityMiddleware, limiter=limiter)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/")).status_code == 200  # loads the scripts
            before = private_redis.script_calls()
            for _ in range(5):
                answer = await client.get("/")
                assert answer.status_code == 200
            calls = private_redis.script_calls() - before
    finally:
        await limiter.aclose()
    if headers:
        assert calls >= 10, calls
        assert any(name.lower().startswith("ratelimit") for name in answer.headers)
    else:
        assert calls == 5, calls
