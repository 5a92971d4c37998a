"""Local contention (a busy pool, a starved event loop) is never taken for a storage failure."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator

import pytest
from starlette.types import Scope

from saasfw.security._ratelimit import (
    RateLimiter,
    RateLimitPolicy,
    RateLimitSettings,
)
from saasfw.security._ratelimit_storage import classify_failure, redis_client

pytestmark = pytest.mark.redis

BUSY = RateLimitPolicy(name="busy", limits="1000000/minute", key="global")


def _scope() -> Scope:
    return {"type": "http", "client": ("203.0.113.7", 1234), "headers": []}


def _settings(redis_url: str, **values: object) -> RateLimitSettings:
    return RateLimitSettings.model_validate(
        {"storage_url": redis_url, "key_prefix": f"t-{secrets.token_hex(6)}", **values}
    )


@pytest.fixture
async def one_connection(redis_url: str) -> AsyncIterator[RateLimiter]:
    pytest.importorskip("redis")
    limiter = RateLimiter(
        _settings(redis_url, redis_max_connections=1, pool_timeout=0.05, storage_timeout=1.0)
    )
    yield limiter
    await limiter.aclose()


async def test_a_held_pool_is_contention_for_the_waiting_requests_only(
    one_connection: RateLimiter,
) -> None:
    limiter = one_connection
    assert (await limiter.check(BUSY, _scope())).allowed  # opens the one connection
    client = redis_client(limiter._storage)
    assert client is not None
    pool = client.connection_pool
    held = await pool.get_connection()
    try:
        waited = await asyncio.gather(*(limiter.check(BUSY, _scope()) for _ in range(50)))
    finally:
        await pool.release(held)
    # Each waiting request fails alone, closed (the settings default), with Retry-After.
    assert all(d.storage_failed and not d.allowed and d.retry_after == 1 for d in waited)
    assert limiter.contention == 50
    assert limiter.storage_errors == 0
    assert not limiter.degraded
    # The pool is free again: checks count normally, nothing to recover from.
    assert (await limiter.check(BUSY, _scope())).allowed
    metrics = limiter.metrics()
    assert metrics.decisions["busy"] == {
        "allowed": 2,
        "refused": 0,
        "failed_open": 0,
        "failed_closed": 50,
    }
    assert (metrics.contention, metrics.storage_errors, metrics.degraded) == (50, 0, False)


async def test_many_checks_through_one_blocking_connection_never_degrade(redis_url: str) -> None:
    # The pool of the issue: redis-py's BlockingConnectionPool with max_connections=1, built
    # by the user and handed over, with a short wait so that some checks do run out of it.
    redis_asyncio = pytest.importorskip("redis.asyncio")
    from limits.aio.storage import RedisStorage

    pool = redis_asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=0.01)
    storage = RedisStorage(
        "async+" + redis_url,
        implementation="redispy",
        key_prefix=f"t-{secrets.token_hex(6)}",
        connection_pool=pool,
    )
    limiter = RateLimiter(_settings(redis_url), storage=storage)
    try:
        for _ in range(5):
            decisions = await asyncio.gather(*(limiter.check(BUSY, _scope()) for _ in range(200)))
            assert not limiter.degraded
            assert all(d.allowed or d.storage_failed for d in decisions)
    finally:
        await limiter.aclose()
    assert limiter.storage_errors == 0
    assert limiter.checks == 1000
    assert limiter.metrics().decisions["busy"]["refused"] == 0


async def test_a_generous_pool_wait_serves_every_check_through_one_connection(
    redis_url: str,
) -> None:
    pytest.importorskip("redis")
    limiter = RateLimiter(_settings(redis_url, redis_max_connections=1, pool_timeout=30))
    try:
        # Connected first: 300 tasks starting in one loop iteration could starve the
        # connect itself past its timeout (contention too, but not what is tested here).
        await limiter.check(BUSY, _scope())
        decisions = await asyncio.gather(*(limiter.check(BUSY, _scope()) for _ in range(300)))
    finally:
        await limiter.aclose()
    assert (limiter.contention, limiter.storage_errors, limiter.degraded) == (0, 0, False)
    assert all(d.allowed and not d.storage_failed for d in decisions)


async def test_a_starved_event_loop_is_not_a_storage_failure(redis_url: str) -> None:
    # The loop is blocked (as by a CPU-bound handler or a starved worker) while checks wait
    # for Redis replies that arrive in time but are read long after their socket timeout.
    pytest.importorskip("redis")
    limiter = RateLimiter(_settings(redis_url, storage_timeout=0.05, degraded_after=1))
    try:
        await limiter.check(BUSY, _scope())  # the pool has a connection
        tasks = [asyncio.ensure_future(limiter.check(BUSY, _scope())) for _ in range(20)]
        await asyncio.sleep(0)  # each task sends its first command and waits for the reply
        time.sleep(0.4)  # noqa: ASYNC251 - the starved loop is the point
        decisions = await asyncio.gather(*tasks)
    finally:
        await limiter.aclose()
    assert limiter.contention > 0, "the blocked loop caused no timeout; nothing was tested"
    assert limiter.storage_errors == 0
    assert not limiter.degraded
    # The timed-out checks were retried once, and the retry found Redis answering.
    assert all(d.allowed and not d.storage_failed for d in decisions)


async def test_failures_are_sorted_from_real_redis_errors(redis_url: str) -> None:
    redis_asyncio = pytest.importorskip("redis.asyncio")
    from limits.errors import StorageError
    from redis import exceptions as redis_errors

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    dead = redis_asyncio.Redis(port=dead_port, socket_connect_timeout=1)
    with pytest.raises(redis_errors.ConnectionError) as refused:
        await dead.ping()
    await dead.aclose()

    pool = redis_asyncio.BlockingConnectionPool.from_url(redis_url, max_connections=1, timeout=0.01)
    busy = redis_asyncio.Redis(connection_pool=pool)
    held = await pool.get_connection()
    with pytest.raises(redis_errors.ConnectionError) as waited:
        await busy.ping()
    await pool.release(held)
    await busy.aclose()
    await pool.disconnect()

    assert classify_failure(refused.value) == "storage"
    assert classify_failure(waited.value) == "contention"
    assert classify_failure(StorageError(waited.value)) == "contention"
    assert classify_failure(redis_errors.MaxConnectionsError("Too many connections")) == (
        "contention"
    )
    assert classify_failure(redis_errors.TimeoutError("Timeout reading from x")) == "timeout"
    assert classify_failure(TimeoutError()) == "timeout"
    assert classify_failure(ConnectionResetError()) == "storage"
    assert classify_failure(redis_errors.ResponseError("OOM")) == "storage"


async def test_degraded_needs_consecutive_errors_and_one_success_resets(redis_url: str) -> None:
    pytest.importorskip("redis")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    down = RateLimiter(
        _settings(f"redis://127.0.0.1:{dead_port}/0", degraded_after=3, on_storage_error="open")
    )
    try:
        states = []
        for _ in range(3):
            decision = await down.check(BUSY, _scope())
            assert decision.allowed  # fails open, alone
            assert decision.storage_failed
            states.append(down.degraded)
    finally:
        await down.aclose()
    assert states == [False, False, True]
    assert down.storage_errors == 3
    assert down.metrics().decisions["busy"]["failed_open"] == 3


async def test_a_hung_redis_is_a_storage_failure() -> None:
    # A server that accepts connections and never answers: Redis stopped (SIGSTOP) or a
    # network that drops replies. Timeouts with nothing succeeding are storage errors.
    pytest.importorskip("redis")
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limiter = RateLimiter(
        RateLimitSettings(
            storage_url=f"redis://127.0.0.1:{port}/0", storage_timeout=0.1, degraded_after=3
        )
    )
    try:
        decisions = [await limiter.check(BUSY, _scope()) for _ in range(3)]
        skipped = await limiter.check(BUSY, _scope())
    finally:
        await limiter.aclose()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert all(d.storage_failed and not d.allowed for d in decisions)
    assert (limiter.storage_errors, limiter.contention, limiter.degraded) == (3, 0, True)
    # Degraded: the next check is decided at once, without touching the storage.
    assert skipped.storage_failed
    assert limiter.storage_errors == 3
