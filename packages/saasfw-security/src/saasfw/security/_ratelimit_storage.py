"""Which rate-limit storage a URL names, and what its errors mean: failing, or a busy process.

A limiter that takes every error for an outage fails requests for everyone whenever one
worker is short of CPU or of pooled connections, although Redis is fine. So errors are
sorted into three kinds:

- ``contention``: this process waited too long for a pooled connection (redis-py's
  ``BlockingConnectionPool`` raises ``ConnectionError("No connection available.")`` from a
  ``TimeoutError``; the non-blocking pool raises ``MaxConnectionsError``; SQLAlchemy's pool
  raises its own ``TimeoutError``). The storage was never asked; it says nothing about it.
- ``timeout``: a socket read, write or connect, or the limiter's own bound, ran out. On a
  healthy loop that is Redis not answering; on a starved loop (CPU-bound neighbours, a
  burst of requests) the reply may have arrived and been read too late. The limiter decides
  which from whether any other check succeeded meanwhile.
- ``storage``: everything else: refused or reset connections, ``OSError``, Redis and
  PostgreSQL errors.

It also drives ``limits``' strategies (one ``hit`` and, unless nobody reads an allowed
request's figures, one ``get_window_stats`` per limit); the Redis client behind ``limits``'
storage comes from :mod:`saasfw.security._limits_internals`, the one module that touches
its internals.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from saasfw.security._errors import ConfigurationError, MissingExtraError
from saasfw.security._limits_internals import redis_client
from saasfw.security._ratelimit_policy import CompiledPolicy, RateLimitDecision, RateLimitSettings

if TYPE_CHECKING:
    from limits.aio.storage import Storage
    from limits.aio.strategies import RateLimiter as LimitsStrategy

__all__ = [
    "Counter",
    "FailureKind",
    "check_storage_extra",
    "classify_failure",
    "count_with_strategy",
    "make_redis_storage",
    "make_storage",
    "make_strategy",
    "ping",
    "redis_client",
    "storage_kind",
]

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
    if kind is None:
        kind = _classify_sql(exc)
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


def _classify_sql(exc: BaseException) -> FailureKind | None:
    try:
        from sqlalchemy import exc as sql_errors
    except ImportError:  # pragma: no cover - without SQLAlchemy, no SQLAlchemy errors
        return None
    if isinstance(exc, sql_errors.TimeoutError):  # QueuePool's wait for a connection
        return "contention"
    if isinstance(exc, sql_errors.DBAPIError):
        # The driver's error: asyncpg's command timeout is the builtin TimeoutError.
        for cause in (exc.orig, exc.__cause__, getattr(exc.orig, "__cause__", None)):
            if isinstance(cause, TimeoutError):
                return "timeout"
        return "storage"
    return None


def storage_kind(settings: RateLimitSettings) -> str:
    """``memory``, ``redis`` or ``postgresql``: where ``settings.storage_url`` counts."""
    if settings.uses_memory_storage:
        return "memory"
    return "postgresql" if settings.uses_postgres_storage else "redis"


def check_storage_extra(settings: RateLimitSettings) -> None:
    """Raise :class:`MissingExtraError` when the storage's client library is missing."""
    kind = storage_kind(settings)
    try:
        if kind == "redis":
            import redis  # noqa: F401
        elif kind == "postgresql":
            import sqlalchemy.ext.asyncio  # noqa: F401

            if importlib.util.find_spec("asyncpg") is None:
                raise ImportError("asyncpg")
    except ImportError:
        extra = "redis" if kind == "redis" else "sql"
        label = "Redis" if kind == "redis" else "PostgreSQL (and asyncpg)"
        raise MissingExtraError(f"rate limiting with {label} storage", extra) from None


def make_storage(settings: RateLimitSettings) -> Storage:
    """The ``limits`` storage of a memory or Redis ``storage_url``."""
    if settings.uses_memory_storage:
        from saasfw.security._ratelimit_memory import BoundedMemoryStorage

        return BoundedMemoryStorage(max_keys=settings.memory_max_keys)
    return make_redis_storage(settings)


Counter = Callable[[CompiledPolicy, Sequence[str], bool], Awaitable[RateLimitDecision]]
"""How a limiter counts: ``(policy, identifiers, figures) -> decision``."""


def make_strategy(name: str, storage: Storage) -> LimitsStrategy:
    """``limits``' asyncio strategy called ``name`` over ``storage``."""
    from limits.aio import strategies

    kinds: dict[str, type[LimitsStrategy]] = {
        "fixed-window": strategies.FixedWindowRateLimiter,
        "moving-window": strategies.MovingWindowRateLimiter,
        "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
    }
    return kinds[name](storage)


async def count_with_strategy(
    strategy: LimitsStrategy,
    compiled: CompiledPolicy,
    identifiers: Sequence[str],
    figures: bool = True,
    cost: int | None = None,
) -> RateLimitDecision:
    """Hit every limit of the policy through ``limits``; the tightest decides.

    ``cost`` overrides the policy's (a reservation counts several requests at once).

    With ``figures`` False an allowed hit is not followed by the window's figures (a
    second script call on Redis): nobody reads them. A refusal always reads them, for its
    ``Retry-After``.
    """
    policy = compiled.policy
    tightest: RateLimitDecision | None = None
    for item in compiled.items:
        allowed = await strategy.hit(item, *identifiers, cost=cost or policy.cost)
        if allowed and not figures:
            tightest = tightest or RateLimitDecision(True, policy.name, item.amount, 0, 0, 0)
            continue
        reset_at, remaining = await strategy.get_window_stats(item, *identifiers)
        window = item.get_expiry()
        reset_after = max(0, math.ceil(reset_at - time.time()))
        if not allowed:
            reset_after = max(1, reset_after)
            return RateLimitDecision(False, policy.name, item.amount, window, 0, reset_after)
        if tightest is None or remaining < tightest.remaining:
            tightest = RateLimitDecision(
                True, policy.name, item.amount, window, max(0, remaining), reset_after
            )
    if tightest is None:  # pragma: no cover - a policy always has at least one limit
        raise ConfigurationError(f"rate limit policy {policy.name!r} has no limit")
    return tightest


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
