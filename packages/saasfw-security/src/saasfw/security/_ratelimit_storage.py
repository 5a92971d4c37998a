"""What a rate-limit storage error means: the storage failing, or this process being busy.

A limiter that takes every error for an outage fails requests for everyone whenever one
worker is short of CPU or of pooled connections, although Redis is fine. So errors are
sorted into three kinds:

- ``contention``: this process waited too long for a pooled connection (redis-py's
  ``BlockingConnectionPool`` raises ``ConnectionError("No connection available.")`` from a
  ``TimeoutError``; the non-blocking pool raises ``MaxConnectionsError``). Redis was never
  asked; it says nothing about Redis.
- ``timeout``: a socket read, write or connect, or the limiter's own bound, ran out. On a
  healthy loop that is Redis not answering; on a starved loop (CPU-bound neighbours, a
  burst of requests) the reply may have arrived and been read too late. The limiter decides
  which from whether any other check succeeded meanwhile.
- ``storage``: everything else: refused or reset connections, ``OSError``, Redis errors.

This is also the one place that reaches into ``limits``' internals (the redis client behind
its async ``RedisStorage``), with a fallback when they move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from saasfw.security._errors import MissingExtraError
from saasfw.security._ratelimit_policy import RateLimitSettings

if TYPE_CHECKING:
    from limits.aio.storage import Storage

__all__ = ["FailureKind", "classify_failure", "make_redis_storage", "ping", "redis_client"]

FailureKind = Literal["contention", "timeout", "storage"]

# redis-py's BlockingConnectionPool message when its wait for a free connection runs out.
_POOL_WAIT_MESSAGE = "No connection available"


def classify_failure(exc: BaseException) -> FailureKind:
    """Sort an exception raised by a storage call (see the module docstring)."""
    # limits wraps storage errors in StorageError(original) when asked to.
    inner = getattr(exc, "storage_error", None)
    if isinstance(inner, BaseException):
        exc = inner
    kind = _classify_redis(exc)
    if kind is not None:
        return kind
    # Before OSError: the builtin TimeoutError (asyncio's too, since 3.11) is an OSError.
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "storage"


def _classify_redis(exc: BaseException) -> FailureKind | None:
    try:
        from redis import exceptions as redis_errors
    except ImportError:  # pragma: no cover - without redis, no redis errors
        return None
    if isinstance(exc, redis_errors.MaxConnectionsError):
        return "contention"
    if (
        isinstance(exc, redis_errors.ConnectionError)
        and isinstance(exc.__cause__, TimeoutError)
        and _POOL_WAIT_MESSAGE in str(exc)
    ):
        return "contention"
    if isinstance(exc, redis_errors.TimeoutError):
        return "timeout"
    return None


def redis_client(storage: object) -> Any | None:
    """The redis-py client behind a ``limits`` async ``RedisStorage`` (None for others).

    ``limits`` keeps it at ``storage.bridge.storage`` (5.x); older releases kept it at
    ``storage.storage``. Only objects with a ``connection_pool`` count, so a changed layout
    yields None (the caller then skips what needed the client) instead of a wrong object.
    """
    for client in (
        getattr(getattr(storage, "bridge", None), "storage", None),
        getattr(storage, "storage", None),
    ):
        if client is not None and hasattr(client, "connection_pool"):
            return client
    return None


async def ping(storage: Storage) -> bool:
    """PING the storage, letting the Redis client's exceptions through: ``limits``' own
    ``check()`` turns every error into False, which hides what kind of failure it was."""
    client = redis_client(storage)
    if client is None:
        return bool(await storage.check())
    await client.ping()
    return True


def make_redis_storage(settings: RateLimitSettings) -> Storage:
    """``limits``' async Redis storage over a pool sized and timed by ``settings``."""
    try:
        from limits.aio.storage import RedisStorage
        from redis.asyncio import BlockingConnectionPool
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError:  # pragma: no cover - the limiter checks at construction
        raise MissingExtraError("rate limiting with Redis storage", "redis") from None
    url = settings.storage_url.get_secret_value()
    # A blocking pool: a burst waits for a connection instead of failing with "too many
    # connections" (redis-py's default pool raises at once when exhausted).
    pool = BlockingConnectionPool.from_url(
        url.replace("redis+unix://", "unix://", 1),
        max_connections=settings.redis_max_connections,
        # Waiting for a free connection is local contention, classified as such above.
        timeout=settings.pool_timeout,
        socket_timeout=settings.storage_timeout,
        socket_connect_timeout=settings.storage_timeout,
        # No client-side retries: a retry multiplies the wait of every request while
        # Redis is down; the limiter's own back-off handles recovery.
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )
    options: dict[str, Any] = {"connection_pool": pool}
    return RedisStorage(
        "async+" + url, implementation="redispy", key_prefix=settings.key_prefix, **options
    )
