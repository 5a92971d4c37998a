"""Rate limiting on the ``limits`` library's storages and strategies.

slowapi is built on ``limits``; its ``SlowAPIMiddleware`` is a ``BaseHTTPMiddleware`` (which
this project forbids: several times the per-request cost and broken contextvars) and its
``SlowAPIASGIMiddleware`` holds back each response start and drives slowapi's ``Limiter``
on synchronous storages (a Redis round trip would block the event loop). So the limiter here
drives ``limits``' asyncio storages directly and the ASGI layer lives in ``_ratelimit_asgi``. Redis
counting is atomic (``limits`` runs every check-and-increment as one Lua script that also
sets the TTL), which is what makes a limit exact across worker processes.

Storage failures never become a 500: each policy fails open (the request proceeds) or closed
(503 with ``Retry-After``). After a failure the storage is left alone for
``retry_storage_after`` seconds so a dead Redis costs one timeout per interval instead of one
per request; the limiter reports itself :attr:`RateLimiter.degraded` meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from starlette.types import Scope

from saasfw.security._errors import ConfigurationError, MissingExtraError, SecurityError
from saasfw.security._events import SecurityEvent, SecurityEvents
from saasfw.security._principal import Principal, get_current_principal
from saasfw.security._proxies import TrustedProxies

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.aio.storage import Storage
    from limits.aio.strategies import RateLimiter as LimitsStrategy

    from saasfw.security._ratelimit_memory import BoundedMemoryStorage

__all__ = [
    "FailureMode",
    "KeyKind",
    "RateLimitDecision",
    "RateLimitExceeded",
    "RateLimitPolicy",
    "RateLimitSettings",
    "RateLimitStorageUnavailable",
    "RateLimiter",
    "Strategy",
    "rate_limit_production_problems",
]

_log = logging.getLogger("saasfw.security.ratelimit")

Strategy = Literal["fixed-window", "moving-window", "sliding-window-counter"]
FailureMode = Literal["open", "closed"]
KeyKind = Literal["address", "principal", "api_key", "global"]
KeyFunction = Callable[[Scope], str | None]

_SAFE_KEY: Final = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
# Cached key bases per policy (one per client address seen); cleared when full, so a
# client rotating addresses costs a recomputation, never unbounded memory.
_ADDRESS_BASES_MAX: Final = 4096
_STORAGE_SCHEMES: Final = {"memory", "redis", "rediss", "redis+unix"}
RATE_LIMIT_EXCEEDED_EVENT: Final = "ratelimit.exceeded"


class RateLimitExceeded(SecurityError):
    """The caller used up a limit (HTTP 429, gRPC RESOURCE_EXHAUSTED)."""

    code = "ratelimit.exceeded"
    status_code = 429

    def __init__(self, decision: RateLimitDecision) -> None:
        super().__init__(f"rate limit {decision.policy} exceeded; retry in {decision.retry_after}s")
        self.decision = decision


class RateLimitStorageUnavailable(SecurityError):
    """The limit could not be checked and the policy fails closed (HTTP 503, UNAVAILABLE)."""

    code = "ratelimit.unavailable"
    status_code = 503

    def __init__(self, decision: RateLimitDecision) -> None:
        super().__init__(
            "rate limit storage is unavailable and this operation fails closed;"
            f" retry in {decision.retry_after}s"
        )
        self.decision = decision


class RateLimitSettings(BaseModel):
    """The ``rate_limit`` section of the security settings (``SAASFW_SECURITY__RATE_LIMIT__*``).

    Attributes:
        enabled: master switch; when off every check passes and no header is sent.
        storage_url: ``memory://`` (one process only) or ``redis://``, ``rediss://``,
            ``redis+unix://`` (needs the ``[redis]`` extra). A secret: it may hold a password.
        strategy: how windows are counted (all three are atomic on Redis).
        key_prefix: Redis key prefix, so several services can share one Redis.
        default_limits: limits the middleware applies to every request, e.g.
            ``["1000/minute", "20/second"]``.
        default_key: what the default limits are counted per.
        on_storage_error: what a policy without its own choice does when storage fails.
        storage_timeout: seconds for a Redis connect and for each command; keep it short, it
            is added to a request whenever Redis is down.
        retry_storage_after: seconds to leave a failed storage alone before trying again.
        memory_max_keys: cap on windows the memory storage holds.
        redis_max_connections: Redis connections per process; a burst beyond it waits up
            to ``storage_timeout`` for a free one.
        ipv6_prefix_length: IPv6 clients are counted per network of this size; a single
            host usually owns a whole /64, so per-address counting would be unlimited.
        exempt_paths: exact paths the middleware never limits (health probes, metrics).
        headers: send ``RateLimit``/``RateLimit-Policy`` on allowed responses too (refusals
            always carry them). Off by default, as in slowapi: two more response headers
            cost more server time than the check itself.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    storage_url: SecretStr = SecretStr("memory://")
    strategy: Strategy = "sliding-window-counter"
    key_prefix: str = Field(default="saasfw-rl", pattern=r"^[A-Za-z0-9._:-]{1,64}$")
    default_limits: tuple[str, ...] = ()
    default_key: KeyKind = "address"
    on_storage_error: FailureMode = "closed"
    storage_timeout: float = Field(default=0.25, gt=0, le=5)
    retry_storage_after: float = Field(default=1.0, gt=0, le=300)
    memory_max_keys: int = Field(default=100_000, ge=1)
    redis_max_connections: int = Field(default=50, ge=1, le=10_000)
    ipv6_prefix_length: int = Field(default=64, ge=32, le=128)
    exempt_paths: tuple[str, ...] = ("/livez", "/readyz", "/startupz", "/healthz", "/metrics")
    headers: bool = False

    @field_validator("storage_url")
    @classmethod
    def _known_storage(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in _STORAGE_SCHEMES:
            raise ValueError(
                f"rate limit storage scheme {scheme!r} is not supported;"
                " use memory:// or redis:// / rediss:// / redis+unix://"
            )
        return value

    @field_validator("default_limits")
    @classmethod
    def _parseable_limits(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for limit in value:
            _parse_limits(limit)
        return value

    @property
    def uses_memory_storage(self) -> bool:
        """True when counters live in this process only."""
        return urlsplit(self.storage_url.get_secret_value()).scheme == "memory"


def rate_limit_production_problems(settings: RateLimitSettings, *, workers: int) -> list[str]:
    """Production rule: in-memory counters with several workers multiply every limit.

    Returns what is wrong (empty when fine), for the umbrella to register as a
    ``ProductionRule`` with whatever worker count it deploys.
    """
    if settings.enabled and settings.uses_memory_storage and workers > 1:
        return [
            f"rate limiting uses memory:// storage with {workers} workers: each worker counts"
            " separately, so every limit is multiplied by the worker count; set"
            " SAASFW_SECURITY__RATE_LIMIT__STORAGE_URL to a redis:// URL"
        ]
    return []


def _parse_limits(text: str) -> list[RateLimitItem]:
    from limits import parse_many

    try:
        items = parse_many(text)
    except ValueError:
        raise ValueError(
            f"rate limit {text!r} is not in limits notation, e.g. '5/minute' or"
            " '10 per second; 1000 per day'"
        ) from None
    if not items:
        raise ValueError(f"rate limit {text!r} is empty")
    return items


@functools.lru_cache(maxsize=256)
def _policy_header(name: str, limit: int, window: int) -> bytes:
    # Policies are configured, so this stays small; it saves formatting on every response.
    return f'"{name}";q={limit};w={window}'.encode()


class RateLimitDecision(NamedTuple):
    """The outcome of one check, with what the response headers need.

    A named tuple, not a dataclass: one is built per request, and a frozen dataclass costs
    three times as much to construct.

    Attributes:
        allowed: the request may proceed.
        policy: the name of the policy that decided (quoted into the headers).
        limit: requests allowed per window of the deciding limit.
        window: window length in seconds.
        remaining: requests left in the window after this one.
        reset_after: seconds until the window frees capacity again.
        storage_failed: the storage could not be reached; ``allowed`` then reflects the
            policy's failure mode and the other figures are meaningless.
    """

    allowed: bool
    policy: str
    limit: int
    window: int
    remaining: int
    reset_after: int
    storage_failed: bool = False

    @property
    def retry_after(self) -> int:
        """Seconds a refused client should wait (at least 1)."""
        return max(1, self.reset_after)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers-09),
        plus ``Retry-After`` when refused. Only ``Retry-After`` after a storage failure."""
        if self.storage_failed:
            return [(b"retry-after", str(self.retry_after).encode())]
        policy = _policy_header(self.policy, self.limit, self.window)
        headers = [
            (b"ratelimit-policy", policy),
            (
                b"ratelimit",
                b"%s;r=%d;t=%d" % (policy[: policy.index(b";")], self.remaining, self.reset_after),
            ),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        return headers


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """One named set of limits, what they are counted per, and how storage failure is met.

    Args:
        name: appears in the keys and in ``RateLimit-Policy``. Routes that share a name
            share the counters (a group); give each route its own name otherwise.
        limits: ``limits`` notation, several separated by ``;`` (``"5/minute;100/day"``).
        key: ``address`` (trusted-proxy resolved client address), ``principal`` (verified
            principal, else the address), ``api_key`` (verified API-key principal, else
            the address), ``global`` (one counter for everyone), or a callable from the
            ASGI scope to a string (None means count by address). Callable results are
            hashed when long or unusual, so keys never embed unbounded client strings.
        on_storage_error: ``open`` or ``closed``; None takes the settings default.
        cost: how many hits one request consumes.
    """

    name: str
    limits: str
    key: KeyKind | KeyFunction = "address"
    on_storage_error: FailureMode | None = None
    cost: int = 1

    def __post_init__(self) -> None:
        if not _SAFE_KEY.fullmatch(self.name):
            raise ConfigurationError(
                f"rate limit policy name {self.name!r} must be 1-64 characters of"
                " letters, digits and ._:@-"
            )
        if self.cost < 1:
            raise ConfigurationError(f"rate limit policy {self.name!r}: cost must be >= 1")
        try:
            _parse_limits(self.limits)
        except ValueError as exc:
            raise ConfigurationError(f"rate limit policy {self.name!r}: {exc}") from None


@dataclass(slots=True)
class _Compiled:
    policy: RateLimitPolicy
    items: list[RateLimitItem]
    fail_open: bool
    # (item, window seconds, key suffix) for the memory fast path.
    memory_keys: list[tuple[RateLimitItem, int, str]]

    # The decision for an allowed request whose figures are not wanted (check_nowait).
    admitted: RateLimitDecision
    # Client address -> memory key base, for address-keyed policies without trusted
    # proxies (then the key depends on the direct peer alone); bounded, see check_nowait.
    address_bases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, policy: RateLimitPolicy, fail_open: bool) -> _Compiled:
        items = _parse_limits(policy.limits)
        keys = [
            (item, item.get_expiry(), f"/{item.amount}/{item.multiples}/{item.GRANULARITY.name}")
            for item in items
        ]
        admitted = RateLimitDecision(True, policy.name, items[0].amount, keys[0][1], 0, 0)
        return cls(policy, items, fail_open, keys, admitted)


def _bounded(value: str) -> str:
    """A key component that is short and inert whatever the input."""
    if _SAFE_KEY.fullmatch(value):
        return value
    return "h." + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class RateLimiter:
    """Checks policies against a ``limits`` storage; one per application (and process).

    Args:
        settings: the rate-limit settings.
        proxies: trusted proxies for resolving the client address (none by default).
        events: security-events port; refusals are published as ``ratelimit.exceeded``.
        principal_provider: returns the verified principal of the current request.
        storage: a ready ``limits`` async storage, overriding ``settings.storage_url``.

    Attributes (for metrics): ``checks``, ``refusals`` and ``storage_errors`` count since
    creation; :attr:`degraded` and :attr:`evictions` are read live.
    """

    def __init__(
        self,
        settings: RateLimitSettings | None = None,
        *,
        proxies: TrustedProxies | None = None,
        events: SecurityEvents | None = None,
        principal_provider: Callable[[], Principal | None] = get_current_principal,
        storage: Storage | None = None,
    ) -> None:
        self.settings = settings or RateLimitSettings()
        self.proxies = proxies or TrustedProxies()
        self._proxied = bool(self.proxies.networks)
        self.events = events
        self._principal = principal_provider
        self._storage: Storage | None = storage
        self._memory: BoundedMemoryStorage | None = None
        self._owns_storage = storage is None
        self._storage_loop: asyncio.AbstractEventLoop | None = None
        self._enabled = self.settings.enabled
        self._strategy_name = self.settings.strategy
        self._strategy: LimitsStrategy | None = None
        self._compiled: dict[int, _Compiled] = {}
        self._retry_at = 0.0
        self._degraded = False
        self.checks = 0
        self.storage_errors = 0
        self.refusals = 0
        self.default_policy: RateLimitPolicy | None = None
        if self.settings.default_limits:
            self.default_policy = RateLimitPolicy(
                name="default",
                limits=";".join(self.settings.default_limits),
                key=self.settings.default_key,
            )
        if not self.settings.uses_memory_storage and storage is None:
            try:
                import redis  # noqa: F401
            except ImportError:
                raise MissingExtraError("rate limiting with Redis storage", "redis") from None

    def __repr__(self) -> str:
        kind = "memory" if self.settings.uses_memory_storage else "redis"
        return f"RateLimiter(storage={kind}, strategy={self.settings.strategy!r})"

    # -- health -------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """True while the storage is failing; for a health check and a gauge metric."""
        return self._degraded

    @property
    def evictions(self) -> int:
        """Live windows dropped by the bounded memory storage because it was full."""
        return int(getattr(self._storage, "evictions", 0))

    async def health_check(self) -> None:
        """Raise :class:`SecurityError` when the storage cannot be reached (``async () -> None``,
        the shape of a k8s ``HealthRegistry`` check); clears :attr:`degraded` when it can."""
        self._follow_event_loop()
        storage = self._get_storage()
        try:
            async with asyncio.timeout(self.settings.storage_timeout * 2):
                healthy = await storage.check()
        except Exception as exc:
            self._mark_failed(exc)
            raise SecurityError(
                "rate limit storage is unreachable", code="ratelimit.degraded"
            ) from None
        if not healthy:
            self._mark_failed(None)
            raise SecurityError("rate limit storage is unreachable", code="ratelimit.degraded")
        self._degraded = False
        self._retry_at = 0.0

    async def aclose(self) -> None:
        """Close the storage's connections (Redis); idempotent. Call it before the event
        loop ends (the umbrella does, at shutdown): connections cannot be closed later."""
        self._follow_event_loop()
        storage, self._storage, self._strategy = self._storage, None, None
        self._memory = None
        bridge = getattr(storage, "bridge", None)
        client = getattr(bridge, "storage", None)
        if client is not None and hasattr(client, "aclose"):
            await client.aclose()
            await client.connection_pool.disconnect()

    # -- checks -------------------------------------------------------------------------

    def client_key(self, scope: Scope, kind: KeyKind | KeyFunction) -> str:
        """The bounded identity a request is counted under for ``kind``."""
        if callable(kind):
            custom = kind(scope)
            if custom is not None:
                return "c." + _bounded(custom)
            kind = "address"
        if kind == "global":
            return "global"
        if kind != "address":
            principal = self._principal()
            if principal is not None and (kind == "principal" or principal.auth_method == kind):
                return f"p.{principal.kind}.{_bounded(principal.id)}"
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
        self, policy: RateLimitPolicy, scope: Scope, *, scope_name: str | None = None
    ) -> RateLimitDecision:
        """Count one request against ``policy``; never raises for storage failures.

        Args:
            policy: what to enforce.
            scope: the ASGI scope (or a gRPC-built stand-in with ``client`` and ``headers``).
            scope_name: an extra bounded namespace, e.g. the route template, so one policy
                object used on several routes counts each route separately.
        """
        decision = self.check_nowait(policy, scope, scope_name=scope_name)
        if decision is not None:
            return decision
        self.checks += 1
        compiled = self._compiled_for(policy)
        identifiers = (policy.name, scope_name or "-", self.client_key(scope, policy.key))
        return self._decided(await self._hit(compiled, identifiers), policy, scope, scope_name)

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
            figures: False when an *allowed* decision's ``remaining`` and ``reset_after``
                will not be read (no ``RateLimit`` headers on allowed responses): they are
                then 0, and a request far from its limit is counted without computing
                them. Refusals always carry every figure.
        """
        compiled = self._compiled_for(policy)
        memory = self._memory
        if memory is None or not self._enabled:
            return None
        self.checks += 1
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
                return compiled.admitted
        # Limits already counted by admit_now are not hit again.
        decision = self._hit_memory(memory, compiled, base, first)
        if decision.allowed:
            return decision
        return self._decided(decision, policy, scope, scope_name)

    def _compiled_for(self, policy: RateLimitPolicy) -> _Compiled:
        compiled = self._compiled.get(id(policy))
        if compiled is None or compiled.policy is not policy:
            compiled = self._compile(policy)
        return compiled

    def _decided(
        self,
        decision: RateLimitDecision,
        policy: RateLimitPolicy,
        scope: Scope,
        scope_name: str | None,
    ) -> RateLimitDecision:
        """Count and publish a refusal; return the decision unchanged."""
        if not decision.allowed and not decision.storage_failed:
            self.refusals += 1
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

    def _compile(self, policy: RateLimitPolicy) -> _Compiled:
        mode = policy.on_storage_error or self.settings.on_storage_error
        compiled = _Compiled.build(policy, mode == "open")
        self._compiled[id(policy)] = compiled
        # Resolve the storage now, so the memory fast path is known before the first hit.
        self._get_strategy()
        return compiled

    async def _hit(self, compiled: _Compiled, identifiers: Sequence[str]) -> RateLimitDecision:
        policy = compiled.policy
        if not self.settings.enabled:
            return RateLimitDecision(True, policy.name, 0, 0, 0, 0)
        now = time.monotonic()
        if self._degraded and now < self._retry_at:
            return self._failed(compiled, now)
        self._follow_event_loop()
        strategy = self._get_strategy()
        tightest: RateLimitDecision | None = None
        try:
            async with asyncio.timeout(self.settings.storage_timeout * 2):
                for item in compiled.items:
                    allowed = await strategy.hit(item, *identifiers, cost=policy.cost)
                    reset_at, remaining = await strategy.get_window_stats(item, *identifiers)
                    window = item.get_expiry()
                    reset_after = max(0, math.ceil(reset_at - time.time()))
                    if not allowed:
                        reset_after = max(1, reset_after)
                        return RateLimitDecision(
                            False, policy.name, item.amount, window, 0, reset_after
                        )
                    if tightest is None or remaining < tightest.remaining:
                        tightest = RateLimitDecision(
                            True, policy.name, item.amount, window, max(0, remaining), reset_after
                        )
        except Exception as exc:
            self._mark_failed(exc)
            return self._failed(compiled, time.monotonic())
        if self._degraded:
            _log.warning("rate limit storage recovered")
            self._degraded = False
        if tightest is None:  # pragma: no cover - a policy always has at least one limit
            raise ConfigurationError(f"rate limit policy {policy.name!r} has no limit")
        return tightest

    def _hit_memory(
        self, storage: BoundedMemoryStorage, compiled: _Compiled, base: str, first: int = 0
    ) -> RateLimitDecision:
        policy = compiled.policy
        strategy = self._strategy_name
        tightest: RateLimitDecision | None = None
        for item, window, suffix in compiled.memory_keys[first:] if first else compiled.memory_keys:
            allowed, remaining, reset_after = storage.hit_now(
                strategy, base + suffix, item.amount, window, policy.cost
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

    def _failed(self, compiled: _Compiled, now: float) -> RateLimitDecision:
        wait = max(1, math.ceil(self._retry_at - now))
        return RateLimitDecision(compiled.fail_open, compiled.policy.name, 0, 0, 0, wait, True)

    def _mark_failed(self, exc: BaseException | None) -> None:
        self.storage_errors += 1
        if not self._degraded:
            # The exception type only: a Redis error message can carry the URL.
            _log.error(
                "rate limit storage failed (%s); limits fail open or closed per policy",
                type(exc).__name__ if exc is not None else "check returned false",
            )
        self._degraded = True
        self._retry_at = time.monotonic() + self.settings.retry_storage_after

    # -- storage ------------------------------------------------------------------------

    def _follow_event_loop(self) -> None:
        """Open a new Redis storage when the running event loop is not the one the current
        storage's connections belong to (a TestClient per test, ``asyncio.run`` per job):
        reusing them would fail every check on the new loop."""
        loop = asyncio.get_running_loop()
        if self._storage_loop is not loop:
            if self._owns_storage and self._storage is not None and self._memory is None:
                self._storage = self._strategy = None
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
            from limits.aio import strategies

            kinds: dict[str, type[LimitsStrategy]] = {
                "fixed-window": strategies.FixedWindowRateLimiter,
                "moving-window": strategies.MovingWindowRateLimiter,
                "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
            }
            self._strategy = kinds[self.settings.strategy](self._get_storage())
        return self._strategy

    def _make_storage(self) -> Storage:
        settings = self.settings
        if settings.uses_memory_storage:
            from saasfw.security._ratelimit_memory import BoundedMemoryStorage

            return BoundedMemoryStorage(max_keys=settings.memory_max_keys)
        try:
            from limits.aio.storage import RedisStorage
            from redis.asyncio import BlockingConnectionPool
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError:  # pragma: no cover - checked in __init__
            raise MissingExtraError("rate limiting with Redis storage", "redis") from None
        url = settings.storage_url.get_secret_value()
        # A blocking pool: a burst waits briefly for a connection instead of failing with
        # "too many connections" (redis-py's default pool raises at once when exhausted).
        pool = BlockingConnectionPool.from_url(
            url.replace("redis+unix://", "unix://", 1),
            max_connections=settings.redis_max_connections,
            timeout=settings.storage_timeout,
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
