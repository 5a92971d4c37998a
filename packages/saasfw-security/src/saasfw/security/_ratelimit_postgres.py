"""PostgreSQL rate-limit storage: exact shared counters without Redis, one statement per hit.

Each window is one row of ``saasfw_rate_limits`` keyed by the limiter's key. A hit is a
single ``INSERT ... ON CONFLICT (key) DO UPDATE ... RETURNING``: PostgreSQL locks the row
and evaluates the update against its latest committed version, so concurrent hits from any
number of processes are serialised per key and a limit is never over-admitted. The
statement decides, counts and returns what the headers need in one round trip; time is
the database's clock, so hosts with skewed clocks agree on the windows.

- ``fixed-window``: ``cur`` hits until ``expires_at`` (the window starts at the first hit);
- ``sliding-window-counter``: ``cur`` and ``prev``, the counts of window ``win`` and the
  one before it, the previous one weighted by its overlap with the last ``expiry`` seconds;
- ``moving-window``: ``times``, the newest ``limit`` admission timestamps, newest first.

The table is ``UNLOGGED`` (no WAL: a crash empties it, which only resets windows) and is
created on first use under an advisory lock, so replicas starting together do not collide.
Expired rows are deleted in bounded batches, in the background, at most once per
``purge_interval`` per process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from saasfw.core import advisory_xact_lock
from saasfw.security._errors import ConfigurationError, MissingExtraError
from saasfw.security._ratelimit_policy import (
    CompiledPolicy,
    RateLimitDecision,
    RateLimitSettings,
    Strategy,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["TABLE", "PostgresRateLimitStorage", "make_postgres_storage"]

_log = logging.getLogger("saasfw.security.ratelimit")

TABLE: Final = "saasfw_rate_limits"
_PURGE_BATCH: Final = 5_000
_MISSING: Final = {"42P01", "3F000"}  # undefined_table, invalid_schema_name
_NOW: Final = "extract(epoch FROM now())::float8"

# -- statements: :key, :limit, :expiry, :cost; each returns (ok, a, b, now[, window]) -------
#
# now() is the statement's start, taken before it waits for the row lock: a hit can find the
# row already written by a later-started one. So a row never moves back: the sliding
# window index and the newest moving-window timestamp only grow.

_FIXED_RESET = f"r.expires_at <= {_NOW}"
_FIXED_COUNT = f"CASE WHEN {_FIXED_RESET} THEN :cost ELSE r.cur + :cost END"
_FIXED = f"""
INSERT INTO {{table}} AS r (key, cur, ok, expires_at)
VALUES (:key, :cost, :cost <= :limit, {_NOW} + :expiry)
ON CONFLICT (key) DO UPDATE SET
    cur = {_FIXED_COUNT},
    ok = {_FIXED_COUNT} <= :limit,
    expires_at = CASE WHEN {_FIXED_RESET} THEN {_NOW} + :expiry ELSE r.expires_at END
RETURNING r.ok, r.cur, r.expires_at, {_NOW}
"""  # noqa: S608  # nosec B608 - module constants and a quoted identifier only

_NOW_WINDOW = f"floor({_NOW} / :expiry)::bigint"
_WINDOW = f"GREATEST(r.win, {_NOW_WINDOW})"
_PREVIOUS = f"CASE r.win WHEN {_WINDOW} THEN r.prev WHEN {_WINDOW} - 1 THEN r.cur ELSE 0 END"
_CURRENT = f"CASE WHEN r.win = {_WINDOW} THEN r.cur ELSE 0 END"
_WEIGHTED = f"{_PREVIOUS} * (1 - GREATEST(0, {_NOW} / :expiry - {_WINDOW})) + {_CURRENT}"
_SLIDING_OK = f"(:cost <= :limit AND floor({_WEIGHTED}) + :cost <= :limit)"
_SLIDING = f"""
INSERT INTO {{table}} AS r (key, win, cur, prev, ok, expires_at)
VALUES (
    :key, {_NOW_WINDOW}, CASE WHEN :cost <= :limit THEN :cost ELSE 0 END, 0, :cost <= :limit,
    ({_NOW_WINDOW} + 2) * :expiry
)
ON CONFLICT (key) DO UPDATE SET
    win = {_WINDOW},
    prev = {_PREVIOUS},
    cur = {_CURRENT} + CASE WHEN {_SLIDING_OK} THEN :cost ELSE 0 END,
    ok = {_SLIDING_OK},
    expires_at = ({_WINDOW} + 2) * :expiry
RETURNING r.ok, r.cur, r.prev, {_NOW}, r.win
"""  # noqa: S608  # nosec B608 - module constants and a quoted identifier only

# Admitting ``cost`` more needs the (limit - cost + 1)-th newest timestamp to have left the
# window (or not to exist): then at most limit - cost admissions are still inside it.
_MOVING_OK = (
    f"(:cost <= :limit AND coalesce(r.times[:limit - :cost + 1] <= {_NOW} - :expiry, true))"
)
_MOVING_NEW = f"array_fill({_NOW}, ARRAY[:cost])"
_MOVING_NEXT = f"array_fill(GREATEST({_NOW}, r.times[1]), ARRAY[:cost])"  # NULLs ignored
_LIVE = f"FROM unnest(r.times) AS t(at) WHERE t.at > {_NOW} - :expiry"
_MOVING = f"""
INSERT INTO {{table}} AS r (key, times, ok, expires_at)
VALUES (
    :key, CASE WHEN :cost <= :limit THEN {_MOVING_NEW} ELSE '{{{{}}}}'::float8[] END,
    :cost <= :limit, {_NOW} + :expiry
)
ON CONFLICT (key) DO UPDATE SET
    times = CASE WHEN {_MOVING_OK} THEN ({_MOVING_NEXT} || r.times)[1:(:limit)] ELSE r.times END,
    ok = {_MOVING_OK},
    expires_at = GREATEST(
        r.expires_at, CASE WHEN {_MOVING_OK} THEN {_NOW} + :expiry ELSE r.expires_at END
    )
RETURNING r.ok, (SELECT count(*) {_LIVE}), (SELECT min(t.at) {_LIVE}), {_NOW}
"""  # noqa: S608  # nosec B608 - module constants and a quoted identifier only


def _typed(statement: str) -> str:
    # asyncpg prepares the statement: every number must have a declared type.
    for name in ("limit", "expiry", "cost"):
        statement = statement.replace(f":{name}", f"CAST(:{name} AS integer)")
    return statement


_STATEMENTS: Final[dict[str, str]] = {
    "fixed-window": _typed(_FIXED),
    "sliding-window-counter": _typed(_SLIDING),
    "moving-window": _typed(_MOVING),
}

_CREATE = """
CREATE UNLOGGED TABLE IF NOT EXISTS {table} (
    key text PRIMARY KEY,
    win bigint NOT NULL DEFAULT 0,
    cur bigint NOT NULL DEFAULT 0,
    prev bigint NOT NULL DEFAULT 0,
    times float8[],
    ok boolean NOT NULL DEFAULT true,
    expires_at float8 NOT NULL
)
"""
_INDEX = "CREATE INDEX IF NOT EXISTS {index} ON {table} (expires_at)"
# The outer condition is re-checked on the row's latest version: a window a concurrent hit
# has just renewed is never deleted.
_PURGE = f"""
DELETE FROM {{table}} WHERE key IN (
    SELECT key FROM {{table}} WHERE expires_at < {_NOW} LIMIT {_PURGE_BATCH}
) AND expires_at < {_NOW}
"""  # noqa: S608  # nosec B608 - module constants and a quoted identifier only


def _figures(strategy: str, row: Sequence[Any], limit: int, expiry: int) -> tuple[int, int]:
    """``(remaining, reset_after)`` from a hit's returned row (the same arithmetic as the
    ``limits`` strategies' ``get_window_stats`` and the memory storage's ``hit_now``)."""
    now = float(row[3])
    if strategy == "fixed-window":
        count, expires_at = int(row[1]), float(row[2])
        return max(0, limit - count), max(0, math.ceil(expires_at - now))
    if strategy == "moving-window":
        count, oldest = int(row[1]), row[2]
        reset = 0 if oldest is None else max(0, math.ceil(float(oldest) + expiry - now))
        return max(0, limit - count), reset
    current, previous = int(row[1]), int(row[2])
    elapsed = max(0.0, now / expiry - int(row[4]))  # the row's window may be a hair ahead
    previous_ttl = (1 - elapsed) * expiry if previous else 0.0
    remaining = max(0, limit - math.floor(previous * previous_ttl / expiry + current))
    if not (previous or current):
        return remaining, 0
    current_ttl = (1 - elapsed) * expiry + expiry
    previous_reset = previous_ttl % (expiry / previous) if previous else math.inf
    current_reset = current_ttl % expiry if current else math.inf
    return remaining, math.ceil(min(previous_reset, current_reset))


class PostgresRateLimitStorage:
    """Rate-limit windows in one PostgreSQL table, for :class:`RateLimiter`.

    The limiter builds one from a ``postgresql://`` (or ``postgresql+asyncpg://``)
    ``storage_url``; build one yourself to share an engine you already have.

    Args:
        engine: a SQLAlchemy ``AsyncEngine`` on asyncpg (yours may be shared: this
            storage runs its statements in ``AUTOCOMMIT``, one round trip each).
        strategy: the limiter's strategy (each has its own statement).
        key_prefix: prefixed to every key, so services can share the table.
        schema: schema of the table (None: the ``search_path``); created if missing.
        purge_interval: seconds between background deletions of expired windows.
        owns_engine: :meth:`aclose` disposes the engine.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        strategy: Strategy = "sliding-window-counter",
        key_prefix: str = "saasfw-rl",
        schema: str | None = None,
        purge_interval: float = 60.0,
        owns_engine: bool = False,
    ) -> None:
        from sqlalchemy import text

        if engine.dialect.name != "postgresql" or engine.dialect.driver != "asyncpg":
            raise ConfigurationError(
                "PostgresRateLimitStorage needs a postgresql+asyncpg engine, not "
                f"{engine.dialect.name}+{engine.dialect.driver}"
            )
        # Each hit commits on its own: no BEGIN and COMMIT round trips around it.
        self.engine = (
            engine if owns_engine else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.strategy = strategy
        self.key_prefix = f"{key_prefix}/{strategy[0]}/"
        self.schema = schema
        self.purge_interval = purge_interval
        self._owns_engine = owns_engine
        quote = engine.dialect.identifier_preparer.quote
        self.table = f"{quote(schema)}.{quote(TABLE)}" if schema else quote(TABLE)
        self._hit = text(_STATEMENTS[strategy].format(table=self.table))
        self._purge = text(_PURGE.format(table=self.table))
        self._ready = False
        self._creating = asyncio.Lock()
        self._next_purge = 0.0
        self._purging: asyncio.Task[int] | None = None
        self.purged = 0

    def __repr__(self) -> str:
        return f"PostgresRateLimitStorage(table={self.table}, strategy={self.strategy!r})"

    async def create_table(self) -> None:
        """Create the schema, table and index if missing (idempotent, race-safe)."""
        from sqlalchemy import text

        quote = self.engine.dialect.identifier_preparer.quote
        index = quote(f"{TABLE}_expires_at")
        lock = f"saasfw-security:ratelimit:{self.table}"
        # DDL under a transaction-scoped advisory lock: concurrent CREATE ... IF NOT EXISTS
        # can still fail on the catalog's unique indexes without it.
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="READ COMMITTED")
            async with conn.begin():
                # Hits may commit asynchronously; the table itself must not be lost.
                await conn.execute(text("SET LOCAL synchronous_commit = on"))
                await advisory_xact_lock(conn, lock)
                if self.schema:
                    await conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {quote(self.schema)}"))
                await conn.execute(text(_CREATE.format(table=self.table)))
                await conn.execute(text(_INDEX.format(index=index, table=self.table)))
        self._ready = True

    async def _ensure_table(self) -> None:
        async with self._creating:
            if not self._ready:
                await self.create_table()

    async def hit(self, key: str, limit: int, expiry: int, cost: int) -> tuple[bool, int, int]:
        """Count ``cost`` against ``key`` and decide, in one statement: ``(allowed,
        remaining, reset_after)``, the last in whole seconds."""
        if not self._ready:
            await self._ensure_table()
        params = {"key": self.key_prefix + key, "limit": limit, "expiry": expiry, "cost": cost}
        try:
            async with self.engine.connect() as conn:
                row = (await conn.execute(self._hit, params)).one()
        except Exception as exc:
            sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
            if sqlstate in _MISSING:  # dropped, or lost with a restored database
                self._ready = False  # the next hit creates it again
            raise
        self._maybe_purge()
        remaining, reset_after = _figures(self.strategy, row, limit, expiry)
        return bool(row[0]), remaining, reset_after

    async def count(
        self,
        compiled: CompiledPolicy,
        identifiers: Sequence[str],
        figures: bool = True,
        cost: int | None = None,
    ) -> RateLimitDecision:
        """Hit every limit of the policy (one statement each); the tightest decides.

        ``figures`` is accepted for the limiter's sake: the one statement returns them anyway.
        ``cost`` overrides the policy's (a reservation counts several requests at once).
        """
        policy = compiled.policy
        base = "/".join(identifiers)
        tightest: RateLimitDecision | None = None
        for item, window, suffix in compiled.memory_keys:
            allowed, remaining, reset_after = await self.hit(
                base + suffix, item.amount, window, cost or policy.cost
            )
            if not allowed:
                return RateLimitDecision(
                    False, policy.name, item.amount, window, 0, max(1, reset_after)
                )
            if tightest is None or remaining < tightest.remaining:
                tightest = RateLimitDecision(
                    True, policy.name, item.amount, window, remaining, reset_after
                )
        if tightest is None:  # pragma: no cover - a policy always has at least one limit
            raise ConfigurationError(f"rate limit policy {policy.name!r} has no limit")
        return tightest

    async def ping(self) -> bool:
        """One round trip to the database (and the table created, if it is not yet);
        raises what the driver raises, so the limiter can tell failure kinds apart."""
        from sqlalchemy import text

        if not self._ready:
            await self._ensure_table()
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now < self._next_purge or (self._purging is not None and not self._purging.done()):
            return
        self._next_purge = now + self.purge_interval
        self._purging = asyncio.ensure_future(self._background_purge())

    async def _background_purge(self) -> int:
        try:
            return await self.purge()
        except Exception as exc:
            # Expired rows only cost space; the next interval tries again.
            _log.warning("rate limit purge failed (%s); retried later", type(exc).__name__)
            return 0

    async def purge(self) -> int:
        """Delete expired windows, in batches, until none is left; returns how many."""
        deleted = 0
        while True:
            async with self.engine.connect() as conn:
                result = await conn.execute(self._purge)
            batch = int(result.rowcount)
            deleted += batch
            self.purged += batch
            if batch < _PURGE_BATCH:
                return deleted

    async def aclose(self) -> None:
        """Stop a purge in flight and, when the engine is this storage's own, dispose it."""
        purging, self._purging = self._purging, None
        if purging is not None and not purging.done():
            purging.cancel()
            await asyncio.gather(purging, return_exceptions=True)
        if self._owns_engine:
            await self.engine.dispose()


def make_postgres_storage(settings: RateLimitSettings) -> PostgresRateLimitStorage:
    """The storage of a ``postgresql://`` ``storage_url``, on its own pooled engine."""
    try:
        from sqlalchemy.ext.asyncio import create_async_engine
    except ImportError:  # pragma: no cover - the limiter checks at construction
        raise MissingExtraError("rate limiting with PostgreSQL storage", "sql") from None
    address = settings.storage_url.get_secret_value().split("://", 1)[1]
    engine = create_async_engine(
        "postgresql+asyncpg://" + address,
        # One statement per hit, no BEGIN/COMMIT round trips around it.
        isolation_level="AUTOCOMMIT",
        pool_size=settings.postgres_max_connections,
        max_overflow=0,
        # Waiting for a free connection is local contention (see _ratelimit_storage).
        pool_timeout=settings.pool_timeout,
        connect_args={
            "timeout": settings.storage_timeout,
            "command_timeout": settings.storage_timeout,
            "server_settings": {
                "application_name": "saasfw-ratelimit",
                # Counters may lose their last milliseconds in a crash; no hit waits for
                # a WAL flush.
                "synchronous_commit": "off",
            },
        },
    )
    return PostgresRateLimitStorage(
        engine,
        strategy=settings.strategy,
        key_prefix=settings.key_prefix,
        schema=settings.postgres_schema,
        purge_interval=settings.postgres_purge_interval,
        owns_engine=True,
    )
