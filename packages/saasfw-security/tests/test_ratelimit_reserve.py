"""Reserved permits: fewer round trips per request, never more admitted than the limit.

Three limiters on one real storage stand for three replicas; requests go to them in turn,
as a load balancer would send them. Redis is a private ``redis-server`` (its own command
counts tell the round trips); PostgreSQL is the shared server.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

import pytest

from saasfw.security import RateLimitPolicy
from saasfw.security._ratelimit import RateLimiter, RateLimitSettings

if TYPE_CHECKING:
    from conftest import PrivateRedis

REQUESTS = 1_000


async def _admitted(url: str, policy: RateLimitPolicy, **settings: object) -> int:
    prefix = f"reserve-{secrets.token_hex(4)}"
    fleet = [
        RateLimiter(
            RateLimitSettings.model_validate(
                {"storage_url": url, "key_prefix": prefix, "storage_timeout": 5.0, **settings}
            )
        )
        for _ in range(3)
    ]
    scope = {"type": "http", "client": ("192.0.2.9", 4000), "headers": []}
    admitted = 0
    try:
        for n in range(REQUESTS):
            decision = await fleet[n % 3].check(policy, scope, figures=False)
            assert not decision.storage_failed
            admitted += decision.allowed
    finally:
        for limiter in fleet:
            await limiter.aclose()
    return admitted


@pytest.mark.redis
async def test_three_replicas_admit_at_most_the_limit(private_redis: PrivateRedis) -> None:
    policy = RateLimitPolicy("busy", "640/minute")  # size up to min(reserve 64, 640 // 64)
    admitted = await _admitted(private_redis.url, policy)
    print(f"640/minute over three replicas: {admitted} of {REQUESTS} admitted")
    assert admitted <= 640  # never more than the limit
    assert admitted >= 640 - 3 * 9  # at most size - 1 unspent permits per replica (size 10)


@pytest.mark.redis
async def test_under_the_limit_most_requests_make_no_round_trip(
    private_redis: PrivateRedis,
) -> None:
    before = private_redis.script_calls()
    admitted = await _admitted(private_redis.url, RateLimitPolicy("roomy", "6400/minute"))
    calls = private_redis.script_calls() - before
    print(f"6400/minute: {admitted} admitted in {calls} script calls")
    assert admitted == REQUESTS
    # Sizes 1, 2, 4, ... up to 64 (6400 // 64 = 100 allows it) per round trip on each replica.
    assert calls < REQUESTS / 4, calls


@pytest.mark.redis
async def test_concurrent_requests_of_one_key_share_one_reservation_in_flight(
    private_redis: PrivateRedis,
) -> None:
    """64 requests at once, as 64 keep-alive connections send them: they wait for the
    reservation in flight instead of each making a round trip of its own."""
    limiter = RateLimiter(
        RateLimitSettings.model_validate(
            {"storage_url": private_redis.url, "key_prefix": "burst", "storage_timeout": 5.0}
        )
    )
    policy = RateLimitPolicy("burst", "100000/minute")
    scope = {"type": "http", "client": ("192.0.2.10", 4000), "headers": []}
    try:
        await limiter.check(policy, scope, figures=False)  # loads the script
        before = private_redis.script_calls()
        for _ in range(10):
            decisions = await asyncio.gather(
                *(limiter.check(policy, scope, figures=False) for _ in range(64))
            )
            assert all(d.allowed for d in decisions)
        calls = private_redis.script_calls() - before
    finally:
        await limiter.aclose()
    print(f"640 requests, 64 at a time: {calls} script calls")
    assert calls <= 640 / 4, calls


@pytest.mark.redis
@pytest.mark.parametrize(
    ("policy", "settings"),
    [
        (RateLimitPolicy("login", "640/minute", sensitive=True), {}),
        (RateLimitPolicy("small", "100/minute"), {}),  # under 128: never reserved
        (RateLimitPolicy("off", "640/minute"), {"reserve": 1}),
    ],
    ids=["sensitive", "small-limit", "reserve-1"],
)
async def test_exact_policies_admit_exactly_the_limit_one_round_trip_each(
    private_redis: PrivateRedis, policy: RateLimitPolicy, settings: dict[str, object]
) -> None:
    before = private_redis.script_calls()
    admitted = await _admitted(private_redis.url, policy, **settings)
    calls = private_redis.script_calls() - before
    assert admitted == int(policy.limits.split("/")[0])
    assert calls >= REQUESTS  # every request went to Redis (refusals read the figures too)


@pytest.mark.postgres
async def test_the_postgresql_storage_reserves_the_same_way(postgres_url: str) -> None:
    admitted = await _admitted(postgres_url, RateLimitPolicy("busy-pg", "640/minute"))
    print(f"PostgreSQL, 640/minute over three replicas: {admitted} admitted")
    assert 640 - 3 * 9 <= admitted <= 640
