"""RedisRevocationStore's local copy: kept current by PUBLISH, distrusted when it may not be.

Real Redis throughout: two stores on one server stand for two replicas.

- propagation: a revoke through A is refused by B from its copy (no Redis read), over 50
  revocations, within a generous bound;
- a key set without an announcement (a replica of an older version during a rolling
  deploy) reaches B's copy by the periodic rescan;
- the subscription killed from the server side (``CLIENT KILL TYPE pubsub``): B reads Redis
  at once, then subscribes and reloads again;
- the server itself killed (a private ``redis-server``): checks refuse (fail closed), and
  after the restart B trusts its copy again, reloaded with what was written meanwhile.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest

from saasfw.security import RedisRevocationStore

if TYPE_CHECKING:
    from conftest import PrivateRedis

pytestmark = pytest.mark.redis

BOUND = 30.0  # seconds; generous on purpose (shared 2-core machine), never a speed claim


async def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def _store(url: str, prefix: str, **options: float) -> RedisRevocationStore:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    return RedisRevocationStore(client, prefix=prefix, heartbeat=0.5, timeout=2.0, **options)


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[RedisRevocationStore, RedisRevocationStore]]:
    prefix = f"test:{secrets.token_hex(6)}:revocation:"
    a, b = _store(redis_url, prefix), _store(redis_url, prefix, refresh=0.3)
    for store in (a, b):
        await store.start()
        async with asyncio.timeout(BOUND):
            assert await store.wait_until_listening()
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


async def _revoked(store: RedisRevocationStore, jti: str) -> bool:
    return await store.is_revoked(jti=jti, family=None, subject="someone", issued_at=time.time())


async def test_a_revocation_through_one_replica_is_refused_by_the_other_from_its_copy(
    pair: tuple[RedisRevocationStore, RedisRevocationStore],
) -> None:
    a, b = pair
    for n in range(50):
        jti = f"token-{n}"
        assert not await _revoked(b, jti)
        await a.revoke_token(jti, time.time() + 600)
        deadline = time.monotonic() + BOUND
        while not await _revoked(b, jti):
            assert time.monotonic() < deadline, jti
            await asyncio.sleep(0.001)
    family = "family-1"
    await a.revoke_family(family, time.time() + 600)
    await a.set_not_before("alice", time.time(), ttl=600)
    await _until(lambda: bool(b._cache.families) and bool(b._cache.not_before), "fam, nbf")
    assert await b.is_revoked(jti=None, family=family, subject="bob", issued_at=time.time())
    assert await b.is_revoked(jti=None, family=None, subject="alice", issued_at=time.time() - 5)
    assert not await b.is_revoked(jti=None, family=None, subject="bob", issued_at=time.time())
    assert b.redis_checks == 0  # every check above answered from the copy
    assert b.cache_checks > 50


async def test_a_key_nobody_announced_reaches_the_copy_by_the_rescan(
    pair: tuple[RedisRevocationStore, RedisRevocationStore],
) -> None:
    a, b = pair
    # What a replica of an older version writes: the key alone, no PUBLISH.
    await a._redis.set(a._key("jti", "silent"), b"1", px=600_000)
    await _until(lambda: b._digest("silent") in b._cache.tokens, "the rescan")
    assert await _revoked(b, "silent")
    assert b.listening


async def test_a_killed_subscription_is_distrusted_then_rebuilt(
    pair: tuple[RedisRevocationStore, RedisRevocationStore],
) -> None:
    a, b = pair
    sessions = b.listener_sessions
    killed = await a._redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    assert killed >= 2  # both stores' subscriptions
    await _until(lambda: b.listener_sessions > sessions, "a new subscription")
    await a.revoke_token("after-kill", time.time() + 600)
    deadline = time.monotonic() + BOUND
    while not await _revoked(b, "after-kill"):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


async def test_redis_down_refuses_checks_and_the_restart_brings_the_copy_back(
    private_redis: PrivateRedis,
) -> None:
    prefix = "test:revocation:"
    b = _store(private_redis.url, prefix, refresh=3600)
    await b.start()
    async with asyncio.timeout(BOUND):
        await b.wait_until_listening()
    try:
        await b.revoke_token("before", time.time() + 600)
        private_redis.stop()
        await _until(lambda: not b.listening, "distrust after the kill")
        import redis.exceptions

        with pytest.raises(redis.exceptions.ConnectionError):  # fails closed: no answer
            await _revoked(b, "never-revoked")
        private_redis.start()  # same port, empty: nothing was kept on disk
        import redis.asyncio as aioredis

        other = aioredis.Redis.from_url(private_redis.url)
        await other.set(f"{prefix}jti:{b._digest('while-away')}", b"1", px=600_000)
        await other.aclose()
        async with asyncio.timeout(BOUND):
            await b.wait_until_listening()
        # Reloaded from the server, not kept from before: the new server has only the key
        # written while the copy was away.
        assert await _revoked(b, "while-away")
        assert not await _revoked(b, "before")
        assert b.listening
    finally:
        await b.aclose()
