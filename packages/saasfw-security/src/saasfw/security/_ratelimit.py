"""The rate limiter: checks policies against a storage and decides what failure means.

Storages: the bounded in-process one (``_ratelimit_memory``), ``limits``' asyncio Redis
storage and strategies, and a PostgreSQL table (``_ratelimit_postgres``). Redis counting is
atomic (one Lua script per check-and-increment), PostgreSQL's by the row lock of ``INSERT
... ON CONFLICT``: a limit holds across worker processes, exactly or, with reserved
permits (``_ratelimit_reserve``), never over it.

Storage failures never become a 500: each policy fails open (the request proceeds) or closed
(503 with ``Retry-After``); ``sensitive`` policies (login, token refresh, API-key creation,
password change) fail closed whatever the global choice. Local contention (a busy pool, a
starved event loop) fails only the request that waited, never the storage; consecutive
storage errors make the limiter :attr:`RateLimiter.degraded` (``_ratelimit_health``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Final

from starlette.types import Scope

from saasfw.security._errors import SecurityError
from saasfw.security._events import SecurityEvent, SecurityEvents
from saasfw.security._principal import Principal, get_current_principal
from saasfw.security._proxies import TrustedProxies
from saasfw.security._ratelimit_health import StorageHealth
from saasfw.security._ratelimit_metrics import (
    ALLOWED,
    FAILED_CLOSED,
    FAILED_OPEN,
    OUTCOMES,
    REFUSED,
    DecisionCounts,
    RateLimitMetrics,
    new_counts,
)
from saasfw.security._ratelimit_policy import (
    CompiledPolicy,
    FailureMode,
    KeyFunction,
    KeyKind,
    RateLimitDecision,
    RateLimitExceeded,
    RateLimitPolicy,
    RateLimitSettings,
    RateLimitStorageUnavailable,
    Strategy,
    bounded_key,
    rate_limit_production_problems,
)
from saasfw.security._ratelimit_postgres import PostgresRateLimitStorage
from saasfw.security._ratelimit_reserve import Reservations
from saasfw.security._ratelimit_storage import (
    Counter,
    check_storage_extra,
    classify_failure,
    count_with_strategy,
    make_storage,
    make_strategy,
    ping,
    redis_client,
    storage_kind,
)

if TYPE_CHECKING:
    from limits.aio.storage import Storage
    from limits.aio.strategies import RateLimiter as LimitsStrategy

    from saasfw.security._ratelimit_memory import BoundedMemoryStorage

__all__ = [
    "FailureMode",
    "KeyFunction",
    "KeyKind",
    "RateLimitDecision",
    "RateLimitExceeded",
    "RateLimitMetrics",
    "RateLimitPolicy",
    "RateLimitSettings",
    "RateLimitStorageUnavailable",
    "RateLimiter",
    "Strategy",
    "rate_limit_production_problems",
]

_log = logging.getLogger("saasfw.security.ratelimit")

# Cached key bases per policy (one per client address seen); cleared when full, so a
# client rotating addresses costs a recomputation, never unbounded memory.
_ADDRESS_BASES_MAX: Final = 4096
RATE_LIMIT_EXCEEDED_EVENT: Final = "ratelimit.exceeded"


class RateLimiter:
    """Checks policies against a ``limits`` storage; one per application (and process).

    Args:
        settings: the rate-limit settings.
        proxies: trusted proxies for resolving the client address (none by default).
        events: security-events port; refusals are published as ``ratelimit.exceeded``.
        principal_provider: returns the verified principal of the current request.
        storage: a ready ``limits`` async storage or :class:`PostgresRateLimitStorage`,
            overriding ``settings.storage_url``.

    For metrics, :meth:`metrics` returns a snapshot of every counter (decisions per policy
    and outcome, storage errors, contention, degraded, evictions); ``checks``,
    ``refusals``, ``storage_errors`` and ``contention`` are also attributes.
    """

    def __init__(
        self,
        settings: RateLimitSettings | None = None,
        *,
        proxies: TrustedProxies | None = None,
        events: SecurityEvents | None = None,
        principal_provider: Callable[[], Principal | None] = get_current_principal,
        storage: Storage | PostgresRateLimitStorage | None = None,
    ) -> None:
        self.settings = settings or RateLimitSettings()
        self.proxies = proxies or TrustedProxies()
        self._proxied = bool(self.proxies.networks)
        self.events = events
        self._principal = principal_provider
        self._storage: Storage | None = None
        self._sql: PostgresRateLimitStorage | None = None
        if isinstance(storage, PostgresRateLimitStorage):
            self._sql = storage
        else:
            self._storage = storage
        self._postgres = self._sql is not None or (
            storage is None and self.settings.uses_postgres_storage
        )
        self._memory: BoundedMemoryStorage | None = None
        self._owns_storage = storage is None
        self._storage_loop: asyncio.AbstractEventLoop | None = None
        self._enabled = self.settings.enabled
        self._strategy_name = self.settings.strategy
        self._strategy: LimitsStrategy | None = None
        self._compiled: dict[int, CompiledPolicy] = {}
        self._health = StorageHealth(self.settings)
        self._reservations = Reservations(self.settings.reserve, self.settings.reserve_for)
        self._counts: dict[str, DecisionCounts] = {}
        self.default_policy: RateLimitPolicy | None = None
        if self.settings.default_limits:
            self.default_policy = RateLimitPolicy(
                name="default",
                limits=";".join(self.settings.default_limits),
                key=self.settings.default_key,
            )
        if storage is None:
            check_storage_extra(self.settings)

    def __repr__(self) -> str:
        kind = "postgresql" if self._postgres else storage_kind(self.settings)
        return f"RateLimiter(storage={kind}, strategy={self.settings.strategy!r})"

    # -- health -------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """True while the storage is failing; for a health check and a gauge metric."""
        return self._health.degraded

    @property
    def storage_errors(self) -> int:
        """Storage errors since creation (contention excluded)."""
        return self._health.storage_errors

    @property
    def contention(self) -> int:
        """Checks delayed past a bound by this process being busy, since creation."""
        return self._health.contention

    @property
    def evictions(self) -> int:
        """Live windows dropped by the bounded memory storage because it was full."""
        return int(getattr(self._storage, "evictions", 0))

    @property
    def checks(self) -> int:
        """Checks decided since creation, whatever the outcome."""
        return sum(sum(counts) for counts in self._counts.values())

    @property
    def refusals(self) -> int:
        """Requests refused for exceeding a limit (429) since creation."""
        return sum(counts[REFUSED] for counts in self._counts.values())

    def metrics(self) -> RateLimitMetrics:
        """A snapshot of the counters, for a metrics exporter to read at scrape time."""
        return RateLimitMetrics(
            degraded=self._health.degraded,
            storage_errors=self.storage_errors,
            contention=self.contention,
            evictions=self.evictions,
            decisions={
                name: dict(zip(OUTCOMES, counts, strict=True))
                for name, counts in self._counts.items()
            },
        )

    async def health_check(self) -> None:
        """Raise :class:`SecurityError` when the storage cannot be reached (``async () -> None``,
        the shape of a k8s ``HealthRegistry`` check); clears :attr:`degraded` when it can."""
        self._follow_event_loop()
        health = self._health
        started = time.monotonic()
        try:
            async with asyncio.timeout(health.operation_timeout(1)):
                healthy = await self._ping()
        except Exception as exc:
            if await health.is_contention(exc, started, self._ping):
                return  # this process is busy; the storage answers others
            health.failed(exc)
            raise SecurityError(
                "rate limit storage is unreachable", code="ratelimit.degraded"
            ) from None
        if not healthy:
            health.failed(None)
            raise SecurityError("rate limit storage is unreachable", code="ratelimit.degraded")
        health.succeeded()
        health.retry_at = 0.0

    async def aclose(self) -> None:
        """Close the storage's connections (Redis); idempotent. Call it before the event
        loop ends (the umbrella does, at shutdown): connections cannot be closed later."""
        self._follow_event_loop()
        storage, self._storage, self._strategy = self._storage, None, None
        self._health.cancel_probe()
        self._memory = None
        sql, self._sql = self._sql, None
        if sql is not None:
            await sql.aclose()
        client = redis_client(storage)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()
            await client.connection_pool.disconnect()

    # -- checks -------------------------------------------------------------------------

    def client_key(self, scope: Scope, kind: KeyKind | KeyFunction) -> str:
        """The bounded identity a request is counted under for ``kind``."""
        if callable(kind):
            custom = kind(scope)
            if custom is not None:
                return "c." + bounded_key(custom)
            kind = "address"
        if kind == "global":
            return "global"
        if kind != "address":
            principal = self._principal()
            if principal is not None and (kind == "principal" or principal.auth_method == kind):
                return f"p.{principal.kind}.{bounded_key(principal.id)}"
        return "a." + self._address_key(scope)

    def _address_key(self, scope: Scope) -> str:
        address = self.proxies.client_address(scope)
        if address is None:
            return "unknown"
        if ":" in address:
            prefix = self.settings.ipv6_prefix_length
            network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
            return str(network.network_address) + f"/{prefix}"
        return address

    async def check(
        self,
        policy: RateLimitPolicy,
        scope: Scope,
        *,
        scope_name: str | None = None,
        figures: bool = True,
    ) -> RateLimitDecision:
        """Count one request against ``policy``; never raises for storage failures.

        Args:
            policy: what to enforce.
            scope: the ASGI scope (or a gRPC-built stand-in with ``client`` and ``headers``).
            scope_name: an extra bounded namespace (the route template, say): one policy on
                several routes then counts each route apart.
            figures: as for :meth:`check_nowait` (False: one Redis script call per limit).
        """
        decision = self.check_nowait(policy, scope, scope_name=scope_name, figures=figures)
        if decision is not None:
            return decision
        compiled = self._compiled_for(policy)
        identifiers = (policy.name, scope_name or "-", self.client_key(scope, policy.key))
        decision = await self._hit(compiled, identifiers, figures)
        return self._decided(decision, compiled, scope, scope_name)

    def check_nowait(
        self,
        policy: RateLimitPolicy,
        scope: Scope,
        *,
        scope_name: str | None = None,
        figures: bool = True,
    ) -> RateLimitDecision | None:
        """:meth:`check` without awaiting, for the in-process (memory) storage.

        Returns None, counting nothing, when the storage needs I/O (Redis) or limiting is
        switched off: then await :meth:`check`. The middleware calls this first, so the
        memory path costs no coroutine.

        Args:
            figures: False when nobody reads an *allowed* decision's ``remaining`` and
                ``reset_after`` (then 0, not computed); refusals always carry them.
        """
        compiled = self._compiled_for(policy)
        memory = self._memory
        if memory is None or not self._enabled:
            return None
        client = scope.get("client")
        if policy.key == "address" and scope_name is None and client and not self._proxied:
            bases = compiled.address_bases
            base = bases.get(client[0])
            if base is None:
                if len(bases) >= _ADDRESS_BASES_MAX:
                    bases.clear()
                base = bases[client[0]] = f"{policy.name}/-/{self.client_key(scope, 'address')}"
        else:
            key = self.client_key(scope, policy.key)
            base = f"{policy.name}/{scope_name or '-'}/{key}"
        first = 0
        if not figures and self._strategy_name == "sliding-window-counter":
            cost = policy.cost
            for item, window, suffix in compiled.memory_keys:
                if not memory.admit_now(base + suffix, item.amount, window, cost):
                    break
                first += 1
            else:
                compiled.counts[ALLOWED] += 1
                return compiled.admitted
        # Limits already counted by admit_now are not hit again.
        from saasfw.security._ratelimit_memory import hit_memory

        decision = hit_memory(memory, self._strategy_name, compiled, base, first)
        if decision.allowed:
            compiled.counts[ALLOWED] += 1
            return decision
        return self._decided(decision, compiled, scope, scope_name)

    def _compiled_for(self, policy: RateLimitPolicy) -> CompiledPolicy:
        compiled = self._compiled.get(id(policy))
        if compiled is None or compiled.policy is not policy:
            compiled = self._compile(policy)
        return compiled

    def _decided(
        self,
        decision: RateLimitDecision,
        compiled: CompiledPolicy,
        scope: Scope,
        scope_name: str | None,
    ) -> RateLimitDecision:
        """Count the decision and publish a refusal; return the decision unchanged."""
        policy = compiled.policy
        if decision.storage_failed:
            compiled.counts[FAILED_OPEN if decision.allowed else FAILED_CLOSED] += 1
        elif decision.allowed:
            compiled.counts[ALLOWED] += 1
        else:
            compiled.counts[REFUSED] += 1
            if self.events is not None:
                self.events.publish(
                    SecurityEvent(
                        type=RATE_LIMIT_EXCEEDED_EVENT,
                        outcome="denied",
                        principal_id=getattr(self._principal(), "id", None),
                        address=self.proxies.client_address(scope),
                        details={"policy": policy.name, "scope": scope_name or "-"},
                    )
                )
        return decision

    def _compile(self, policy: RateLimitPolicy) -> CompiledPolicy:
        mode = policy.failure_mode(self.settings.on_storage_error)
        counts = self._counts.get(policy.name)
        if counts is None:
            counts = self._counts[policy.name] = new_counts()
        compiled = CompiledPolicy.build(policy, mode == "open", counts)
        self._compiled[id(policy)] = compiled
        # Resolve the storage now, so the memory fast path is known before the first hit.
        if not self._postgres:
            self._get_strategy()
        return compiled

    async def _hit(
        self, compiled: CompiledPolicy, identifiers: Sequence[str], figures: bool = True
    ) -> RateLimitDecision:
        policy = compiled.policy
        if not self.settings.enabled:
            return RateLimitDecision(True, policy.name, 0, 0, 0, 0)
        # A permit reserved earlier (_ratelimit_reserve) admits without the storage.
        reservations = self._reservations
        reserving = not figures and reservations.cap(compiled) > 1
        if reserving and (
            reservations.spend(compiled, identifiers)
            or await reservations.wait(compiled, identifiers)
        ):
            return compiled.admitted
        health = self._health
        now = time.monotonic()
        if health.skipping(now):
            return self._failed(compiled, now)
        self._follow_event_loop()
        count = self._counter()
        if reserving:
            count = partial(reservations.reserve, count)
        # A timeout the storage turns out to answer for (a starved loop read the reply or
        # the connect late) is retried once. A retried hit may already have been counted
        # (Redis ran it, the reply came too late): that over-counts one cost, never under.
        for retried in (False, True):
            started = time.monotonic()
            try:
                async with asyncio.timeout(health.operation_timeout(len(compiled.items))):
                    decision = await count(compiled, identifiers, figures)
            except Exception as exc:
                kind = classify_failure(exc)
                if kind == "timeout" and await health.storage_answers(started, self._ping):
                    kind = "contention"
                    if not retried:
                        health.contention += 1
                        continue
                if kind == "contention":
                    # Only this request waited too long; the storage is not to blame.
                    health.contention += 1
                    return RateLimitDecision(compiled.fail_open, policy.name, 0, 0, 0, 1, True)
                health.failed(exc)
                return self._failed(compiled, time.monotonic())
            health.succeeded()
            return decision
        raise AssertionError("unreachable")  # pragma: no cover - the loop always returns

    def _failed(self, compiled: CompiledPolicy, now: float) -> RateLimitDecision:
        wait = self._health.retry_after(now)
        return RateLimitDecision(compiled.fail_open, compiled.policy.name, 0, 0, 0, wait, True)

    async def _ping(self) -> bool:
        if self._postgres:
            return await self._postgres_storage().ping()
        return await ping(self._get_storage())

    # -- storage ------------------------------------------------------------------------

    def _follow_event_loop(self) -> None:
        """Open a new Redis storage when the running event loop is not the one the current
        storage's connections belong to (a TestClient per test, ``asyncio.run`` per job):
        reusing them would fail every check on the new loop."""
        loop = asyncio.get_running_loop()
        if self._storage_loop is not loop:
            if self._owns_storage and self._storage is not None and self._memory is None:
                self._storage = self._strategy = None
            if self._owns_storage and self._sql is not None:
                self._sql = None  # its pooled connections belong to the previous loop
            self._storage_loop = loop

    def _get_storage(self) -> Storage:
        if self._storage is None:
            self._storage = self._make_storage()
        from saasfw.security._ratelimit_memory import BoundedMemoryStorage

        if isinstance(self._storage, BoundedMemoryStorage):
            self._memory = self._storage
        return self._storage

    def _get_strategy(self) -> LimitsStrategy:
        if self._strategy is None:
            self._strategy = make_strategy(self.settings.strategy, self._get_storage())
        return self._strategy

    def _make_storage(self) -> Storage:
        return make_storage(self.settings)

    def _postgres_storage(self) -> PostgresRateLimitStorage:
        if self._sql is None:
            from saasfw.security._ratelimit_postgres import make_postgres_storage

            self._sql = make_postgres_storage(self.settings)
        return self._sql

    def _counter(self) -> Counter:
        """The PostgreSQL storage's one statement per limit, or ``limits``' strategy."""
        if self._postgres:
            return self._postgres_storage().count
        return partial(count_with_strategy, self._get_strategy())
