"""Rate limiting over HTTP, in process, against the memory storage and a real Redis."""

import asyncio
import gc
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.types import Scope

from saasfw.security._errors import ConfigurationError
from saasfw.security._events import SecurityEvent, SecurityEvents
from saasfw.security._principal import AuthMethod, Principal, set_current_principal
from saasfw.security._proxies import TrustedProxies
from saasfw.security._ratelimit import (
    RateLimitDecision,
    RateLimiter,
    RateLimitPolicy,
    RateLimitSettings,
    Strategy,
    rate_limit_production_problems,
)
from saasfw.security._ratelimit_asgi import RateLimit, RateLimitMiddleware, install_rate_limiter

STRATEGIES: tuple[Strategy, ...] = ("fixed-window", "moving-window", "sliding-window-counter")


def _client(app: FastAPI, address: str = "203.0.113.10") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def _app(limiter: RateLimiter) -> FastAPI:
    app = FastAPI()

    @app.get("/limited", dependencies=[Depends(RateLimit("5/minute"))])
    async def limited() -> dict[str, str]:
        return {"ok": "limited"}

    @app.get("/other", dependencies=[Depends(RateLimit("5/minute"))])
    async def other() -> dict[str, str]:
        return {"ok": "other"}

    @app.get("/login-a", dependencies=[Depends(RateLimit("3/minute", group="login"))])
    async def login_a() -> dict[str, str]:
        return {"ok": "a"}

    @app.get("/login-b", dependencies=[Depends(RateLimit("3/minute", group="login"))])
    async def login_b() -> dict[str, str]:
        return {"ok": "b"}

    @app.get("/items/{item_id}", dependencies=[Depends(RateLimit("2/minute"))])
    async def item(item_id: str) -> dict[str, str]:
        return {"ok": item_id}

    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    return app


async def _statuses(client: httpx.AsyncClient, path: str, n: int) -> list[int]:
    return [(await client.get(path)).status_code for _ in range(n)]


@pytest.fixture
async def memory_limiter() -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter(RateLimitSettings())
    yield limiter
    await limiter.aclose()


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_per_route_limit_with_headers(strategy: Strategy) -> None:
    limiter = RateLimiter(RateLimitSettings(strategy=strategy, headers=True))
    async with _client(_app(limiter)) as client:
        responses = [await client.get("/limited") for _ in range(7)]
    assert [r.status_code for r in responses] == [200] * 5 + [429] * 2
    first, refused = responses[0], responses[5]
    assert first.headers["ratelimit-policy"] == '"route";q=5;w=60'
    assert first.headers["ratelimit"].startswith('"route";r=4;t=')
    assert "retry-after" not in first.headers
    assert refused.headers["ratelimit"].startswith('"route";r=0;t=')
    assert 1 <= int(refused.headers["retry-after"]) <= 120
    assert refused.json()["detail"].startswith("Rate limit exceeded")


async def test_by_default_only_refusals_carry_the_headers(memory_limiter: RateLimiter) -> None:
    async with _client(_app(memory_limiter)) as client:
        responses = [await client.get("/limited") for _ in range(6)]
    assert all("ratelimit" not in r.headers for r in responses[:5])
    refused = responses[5]
    assert refused.status_code == 429
    assert refused.headers["ratelimit-policy"] == '"route";q=5;w=60'
    assert refused.headers["ratelimit"].startswith('"route";r=0;t=')
    assert int(refused.headers["retry-after"]) >= 1


async def test_routes_count_separately_and_groups_share(memory_limiter: RateLimiter) -> None:
    async with _client(_app(memory_limiter)) as client:
        assert await _statuses(client, "/limited", 6) == [200] * 5 + [429]
        assert await _statuses(client, "/other", 1) == [200]
        assert await _statuses(client, "/login-a", 2) == [200, 200]
        assert await _statuses(client, "/login-b", 2) == [200, 429]
        assert await _statuses(client, "/login-a", 1) == [429]


async def test_one_route_with_several_methods_has_one_budget(
    memory_limiter: RateLimiter,
) -> None:
    # The key holds the route's declared methods, not the request's (client-chosen) one.
    app = FastAPI()

    @app.api_route("/both", methods=["GET", "POST"], dependencies=[Depends(RateLimit("5/minute"))])
    async def both() -> dict[str, str]:
        return {"ok": "both"}

    install_rate_limiter(app, memory_limiter)
    async with _client(app) as client:
        codes = [(await client.get("/both")).status_code for _ in range(3)]
        codes += [(await client.post("/both")).status_code for _ in range(3)]
    assert codes == [200] * 5 + [429]


async def test_path_parameters_share_the_route_counter(memory_limiter: RateLimiter) -> None:
    # The key holds the route template, never the raw (client-controlled) path.
    async with _client(_app(memory_limiter)) as client:
        codes = [(await client.get(f"/items/{secrets.token_hex(8)}")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


async def test_clients_are_counted_separately(memory_limiter: RateLimiter) -> None:
    app = _app(memory_limiter)
    async with _client(app, "203.0.113.1") as one, _client(app, "203.0.113.2") as two:
        assert await _statuses(one, "/limited", 6) == [200] * 5 + [429]
        assert await _statuses(two, "/limited", 1) == [200]


async def test_ipv6_clients_are_counted_per_network(memory_limiter: RateLimiter) -> None:
    app = _app(memory_limiter)
    codes = []
    for host in range(6):
        async with _client(app, f"2001:db8:1:2::{host + 1:x}") as client:
            codes.append((await client.get("/limited")).status_code)
    assert codes == [200] * 5 + [429]
    async with _client(app, "2001:db8:1:3::1") as client:
        assert (await client.get("/limited")).status_code == 200


async def test_default_limits_from_middleware_are_problem_json() -> None:
    limiter = RateLimiter(RateLimitSettings(default_limits=("3/minute",), headers=True))
    async with _client(_app(limiter)) as client:
        responses = [await client.get("/other") for _ in range(4)]
        health = [await client.get("/healthz") for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    refused = responses[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 429
    assert refused.headers["ratelimit-policy"] == '"default";q=3;w=60'
    assert int(refused.headers["retry-after"]) >= 1
    # Both the middleware's and the route's policy are advertised (a structured-field list).
    assert responses[0].headers["ratelimit-policy"] == '"route";q=5;w=60, "default";q=3;w=60'
    # Exempt paths (probes) are never limited, so a 404 here, not a 429.
    assert {r.status_code for r in health} == {404}


# Acceptance 2: spoofed X-Forwarded-For never buys a fresh counter.


def _spoof_app(proxies: TrustedProxies) -> FastAPI:
    limiter = RateLimiter(RateLimitSettings(), proxies=proxies)
    app = FastAPI()

    @app.get("/per-address", dependencies=[Depends(RateLimit("10/minute", key="address"))])
    async def per_address() -> dict[str, str]:
        return {"ok": "yes"}

    install_rate_limiter(app, limiter)
    return app


async def test_spoofed_forwarded_for_without_trusted_proxy() -> None:
    app = _spoof_app(TrustedProxies())
    async with _client(app, "198.51.100.23") as client:
        codes = [
            (
                await client.get("/per-address", headers={"X-Forwarded-For": f"10.9.{i}.{i}"})
            ).status_code
            for i in range(50)
        ]
    assert codes == [200] * 10 + [429] * 40


async def test_spoofed_forwarded_for_behind_one_trusted_proxy() -> None:
    # The client sends its own X-Forwarded-For; the trusted proxy (10.0.0.2, the direct
    # peer) appends the address it saw. Only that right-most entry counts.
    app = _spoof_app(TrustedProxies(["10.0.0.0/24"]))
    async with _client(app, "10.0.0.2") as proxy:
        codes = [
            (
                await proxy.get(
                    "/per-address",
                    headers={"X-Forwarded-For": f"7.7.{i}.{i}, 1.2.3.{i}, 198.51.100.23"},
                )
            ).status_code
            for i in range(50)
        ]
        other_client = await proxy.get("/per-address", headers={"X-Forwarded-For": "198.51.100.24"})
    assert codes == [200] * 10 + [429] * 40
    assert other_client.status_code == 200


# Keys: principals, API keys, custom functions; never unbounded client strings.


def _principal_app(limiter: RateLimiter, key: str) -> FastAPI:
    app = FastAPI()

    # Async, as a real security dependency is: a sync one runs in a worker thread whose
    # context copy would not carry the principal back to later dependencies.
    async def authenticate(request: Request) -> Principal | None:
        user = request.headers.get("x-test-user")
        if user is None:
            # httpx's ASGI transport runs every request in the test's own context.
            set_current_principal(None)
            return None
        method: AuthMethod = "api_key" if user.startswith("key-") else "jwt"
        principal = Principal(id=user, kind="user", auth_method=method)
        set_current_principal(principal)
        return principal

    limit = RateLimit("2/minute", key=key, limiter=limiter)  # type: ignore[arg-type]

    @app.get("/me")
    async def me(
        principal: Annotated[Principal | None, Depends(authenticate)],
        _: Annotated[None, Depends(limit)],
    ) -> dict[str, str | None]:
        return {"id": principal.id if principal else None}

    return app


async def test_principal_key_counts_per_principal_not_address() -> None:
    limiter = RateLimiter(RateLimitSettings())
    async with _client(_principal_app(limiter, "principal")) as client:
        alice = [
            (await client.get("/me", headers={"x-test-user": "alice"})).status_code
            for _ in range(3)
        ]
        bob = [
            (await client.get("/me", headers={"x-test-user": "bob"})).status_code for _ in range(2)
        ]
        anonymous = await _statuses(client, "/me", 3)
    assert alice == [200, 200, 429]
    assert bob == [200, 200]
    assert anonymous == [200, 200, 429]


async def test_api_key_key_only_uses_api_key_principals() -> None:
    limiter = RateLimiter(RateLimitSettings())
    async with _client(_principal_app(limiter, "api_key")) as client:
        key_a = [
            (await client.get("/me", headers={"x-test-user": "key-a"})).status_code
            for _ in range(3)
        ]
        # A JWT user on the same address falls back to the address counter.
        jwt_users = [
            (await client.get("/me", headers={"x-test-user": f"user{i}"})).status_code
            for i in range(3)
        ]
    assert key_a == [200, 200, 429]
    assert jwt_users == [200, 200, 429]


def _scope(address: str = "203.0.113.5") -> Scope:
    return {"type": "http", "client": (address, 1), "headers": []}


def test_key_components_are_bounded() -> None:
    limiter = RateLimiter(RateLimitSettings(), principal_provider=lambda: None)
    hostile = "x" * 10_000 + "/\n*{}"

    def custom(_: Scope) -> str:
        return hostile

    key = limiter.client_key(_scope(), custom)
    assert key.startswith("c.h.")
    assert len(key) <= 40
    assert limiter.client_key(_scope(), lambda _: "tenant-7") == "c.tenant-7"
    assert limiter.client_key(_scope(), lambda _: None) == "a.203.0.113.5"
    assert limiter.client_key(_scope(), "global") == "global"
    long_principal = Principal(id="u" * 500, kind="user", auth_method="jwt")
    limiter_p = RateLimiter(RateLimitSettings(), principal_provider=lambda: long_principal)
    assert len(limiter_p.client_key(_scope(), "principal")) < 50
    assert limiter.client_key({"type": "http", "headers": []}, "address") == "a.unknown"


async def test_refusals_are_published_as_security_events() -> None:
    events = SecurityEvents()
    seen: list[SecurityEvent] = []
    events.subscribe(seen.append)
    limiter = RateLimiter(RateLimitSettings(), events=events)
    policy = RateLimitPolicy(name="api", limits="1/minute")
    assert (await limiter.check(policy, _scope())).allowed
    assert not (await limiter.check(policy, _scope())).allowed
    assert [e.type for e in seen] == ["ratelimit.exceeded"]
    assert seen[0].outcome == "denied"
    assert seen[0].address == "203.0.113.5"
    assert limiter.refusals == 1


async def test_disabled_limiter_allows_everything() -> None:
    limiter = RateLimiter(RateLimitSettings(enabled=False))
    policy = RateLimitPolicy(name="api", limits="1/minute")
    decisions = [await limiter.check(policy, _scope()) for _ in range(3)]
    assert all(d.allowed for d in decisions)


async def test_multiple_limits_report_the_tightest() -> None:
    limiter = RateLimiter(RateLimitSettings())
    policy = RateLimitPolicy(name="api", limits="100/minute;2/second")
    first = await limiter.check(policy, _scope())
    assert (first.limit, first.remaining) == (2, 1)
    await limiter.check(policy, _scope())
    refused = await limiter.check(policy, _scope())
    assert not refused.allowed
    assert refused.limit == 2
    assert refused.window == 1


def test_decision_headers_follow_the_ietf_draft() -> None:
    allowed = RateLimitDecision(True, "api", 10, 60, 7, 42)
    assert allowed.headers() == [
        (b"ratelimit-policy", b'"api";q=10;w=60'),
        (b"ratelimit", b'"api";r=7;t=42'),
    ]
    refused = RateLimitDecision(False, "api", 10, 60, 0, 0)
    assert (b"retry-after", b"1") in refused.headers()
    failed = RateLimitDecision(False, "api", 0, 0, 0, 3, storage_failed=True)
    assert failed.headers() == [(b"retry-after", b"3")]


# Settings and production rule.


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="not supported"):
        RateLimitSettings.model_validate({"storage_url": "memcached://localhost"})
    with pytest.raises(ValueError, match="limits notation"):
        RateLimitSettings(default_limits=("five per fortnight",))
    with pytest.raises(ValueError, match="key_prefix"):
        RateLimitSettings(key_prefix="has space")
    with pytest.raises(ConfigurationError, match="cost"):
        RateLimitPolicy(name="x", limits="1/second", cost=0)
    with pytest.raises(ConfigurationError, match="name"):
        RateLimitPolicy(name="has/slash", limits="1/second")
    with pytest.raises(ConfigurationError, match="limits notation"):
        RateLimit("lots")
    settings = RateLimitSettings.model_validate({"storage_url": "redis://:hunter2@redis:6379/0"})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(RateLimiter(settings))


def test_production_rule_refuses_memory_storage_with_several_workers() -> None:
    memory = RateLimitSettings()
    redis = RateLimitSettings.model_validate({"storage_url": "redis://redis:6379/0"})
    assert rate_limit_production_problems(memory, workers=1) == []
    problems = rate_limit_production_problems(memory, workers=4)
    assert len(problems) == 1
    assert "4 workers" in problems[0]
    assert "redis://" in problems[0]
    assert rate_limit_production_problems(redis, workers=4) == []
    assert rate_limit_production_problems(RateLimitSettings(enabled=False), workers=4) == []


async def test_dependency_without_limiter_is_a_configuration_error() -> None:
    app = FastAPI()

    @app.get("/x", dependencies=[Depends(RateLimit("1/minute"))])
    async def x() -> None:
        return None

    with pytest.raises(ConfigurationError, match="RateLimiter"):
        async with _client(app) as client:
            await client.get("/x")


# Redis: atomic strategies, exact under concurrency, a TTL on every key.


def _redis_limiter(redis_url: str, strategy: Strategy, prefix: str) -> RateLimiter:
    settings = RateLimitSettings.model_validate(
        {"storage_url": redis_url, "strategy": strategy, "key_prefix": prefix, "storage_timeout": 2}
    )
    return RateLimiter(settings)


async def _keys_and_ttls(redis_url: str, prefix: str) -> dict[str, int]:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=500)]
        return {k.decode(): await client.ttl(k) for k in keys}
    finally:
        await client.aclose()


@pytest.mark.redis
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_redis_is_exact_under_concurrency_and_every_key_expires(
    redis_url: str, strategy: Strategy
) -> None:
    pytest.importorskip("redis")
    prefix = f"t-{secrets.token_hex(6)}"
    limiter = _redis_limiter(redis_url, strategy, prefix)
    policy = RateLimitPolicy(name="api", limits="5/minute")
    other = RateLimitPolicy(name="other", limits="3/second;10/hour", key="global")
    try:
        decisions = await asyncio.gather(*(limiter.check(policy, _scope()) for _ in range(100)))
        await asyncio.gather(*(limiter.check(other, _scope()) for _ in range(5)))
    finally:
        await limiter.aclose()
    assert sum(d.allowed for d in decisions) == 5
    assert not limiter.degraded
    ttls = await _keys_and_ttls(redis_url, prefix)
    assert ttls, "the limiter wrote no keys"
    assert all(0 < ttl <= 2 * 3600 for ttl in ttls.values()), ttls


@pytest.mark.redis
# Without aclose() before each loop ends, asyncio reports the abandoned connections of the
# dead loops when they are collected; what matters here is that checks keep working.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_one_limiter_serves_several_event_loops(redis_url: str) -> None:
    # A TestClient per test, or asyncio.run per job, gives each its own loop; Redis
    # connections opened on the first must not break checks on the next.
    pytest.importorskip("redis")
    limiter = _redis_limiter(redis_url, "fixed-window", f"t-{secrets.token_hex(6)}")
    policy = RateLimitPolicy(name="api", limits="3/minute")
    first = asyncio.run(limiter.check(policy, _scope()))
    later = [asyncio.run(limiter.check(policy, _scope())) for _ in range(3)]
    asyncio.run(limiter.aclose())
    gc.collect()  # report the dead loops' connections here, under this test's filters
    assert first.allowed
    assert [d.allowed for d in later] == [True, True, False]
    assert not any(d.storage_failed for d in [first, *later])
    assert limiter.storage_errors == 0


@pytest.mark.redis
async def test_redis_refusal_over_http_has_retry_after(redis_url: str) -> None:
    pytest.importorskip("redis")
    prefix = f"t-{secrets.token_hex(6)}"
    limiter = _redis_limiter(redis_url, "fixed-window", prefix)
    try:
        async with _client(_app(limiter)) as client:
            responses = [await client.get("/limited") for _ in range(6)]
    finally:
        await limiter.aclose()
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert 1 <= int(responses[-1].headers["retry-after"]) <= 60


def test_limiter_callable_keys_are_typed() -> None:
    fn: Callable[[Scope], str | None] = lambda scope: None  # noqa: E731
    assert RateLimitPolicy(name="x", limits="1/second", key=fn).key is fn
