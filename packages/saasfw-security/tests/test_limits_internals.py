"""The adapter over ``limits``' internals (``_limits_internals``): the real layout of the
installed ``limits`` is read, and a storage without it takes the documented fallback.

CI runs this file twice (scripts/check_adapters.py): at the locked, newest versions and at
the lowest versions the pyproject ranges allow.
"""

from __future__ import annotations

import uuid
from importlib.metadata import version

import pytest
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import FixedWindowRateLimiter

from saasfw.security._limits_internals import redis_client
from saasfw.security._ratelimit_policy import RateLimitSettings
from saasfw.security._ratelimit_storage import make_redis_storage, ping


def _limits_at_least(major: int, minor: int) -> bool:
    parts = version("limits").split(".")
    return (int(parts[0]), int(parts[1])) >= (major, minor)


# make_redis_storage passes implementation="redispy" (limits 4.2+) and key_prefix (5.1+).
_REDISPY_STORAGE = pytest.mark.xfail(
    not _limits_at_least(5, 1),
    reason="limits<5.1 has no key_prefix for its async RedisStorage: needs limits>=5.1",
    strict=True,
)


@pytest.mark.redis
@_REDISPY_STORAGE
async def test_the_redis_client_behind_a_real_storage_is_found(redis_url: str) -> None:
    settings = RateLimitSettings.model_validate(
        {"storage_url": redis_url, "key_prefix": f"adapter-{uuid.uuid4().hex[:8]}"}
    )
    storage = make_redis_storage(settings)
    client = redis_client(storage)
    try:
        assert client is not None
        assert await client.ping() is True
        assert await ping(storage) is True
        # The client found is the one the storage counts with.
        limiter = FixedWindowRateLimiter(storage)
        assert await limiter.hit(parse("2/minute"), "who") is True
        keys = await client.keys(f"{settings.key_prefix}*")
        assert keys, "the storage wrote through another client than the one found"
    finally:
        if client is not None:
            await client.aclose()
            await client.connection_pool.disconnect()


async def test_a_storage_without_a_redis_client_uses_the_public_check() -> None:
    # A real limits storage that keeps no redis client anywhere: the documented fallback.
    storage = MemoryStorage()
    assert redis_client(storage) is None
    assert await ping(storage) is True


class _Renamed:
    """A storage whose client moved somewhere this adapter does not know."""

    def __init__(self) -> None:
        self._client = object()
        self.bridge = object()  # present, but without a client at .storage


def test_a_changed_layout_yields_none_rather_than_a_wrong_object() -> None:
    assert redis_client(_Renamed()) is None
    assert redis_client(object()) is None


class _OldLayout:
    """limits 4.x kept the client at ``storage.storage``."""

    class _Client:
        connection_pool = object()

    def __init__(self) -> None:
        self.storage = self._Client()


def test_the_older_layout_is_still_read() -> None:
    storage = _OldLayout()
    assert redis_client(storage) is storage.storage
