"""Rate-limit policies, settings and decisions: what to limit and what a check answered.

Kept apart from the limiter (``_ratelimit``) so the declarations users write and read stay
small; the limiter re-exports every name here.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from starlette.types import Scope

from saasfw.security._errors import ConfigurationError, SecurityError

if TYPE_CHECKING:
    from limits import RateLimitItem

    from saasfw.security._ratelimit_metrics import DecisionCounts

__all__ = [
    "SAFE_KEY",
    "CompiledPolicy",
    "FailureMode",
    "KeyFunction",
    "KeyKind",
    "RateLimitDecision",
    "RateLimitExceeded",
    "RateLimitPolicy",
    "RateLimitSettings",
    "RateLimitStorageUnavailable",
    "Strategy",
    "bounded_key",
    "parse_limits",
    "rate_limit_production_problems",
]

Strategy = Literal["fixed-window", "moving-window", "sliding-window-counter"]
FailureMode = Literal["open", "closed"]
KeyKind = Literal["address", "principal", "api_key", "global"]
KeyFunction = Callable[[Scope], str | None]

SAFE_KEY: Final = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
_STORAGE_SCHEMES: Final = {
    "memory",
    "redis",
    "rediss",
    "redis+unix",
    "postgresql",
    "postgresql+asyncpg",
}
_IDENTIFIER: Final = r"^[a-z_][a-z0-9_]{0,62}$"


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
        storage_url: ``memory://`` (one process only); ``redis://``, ``rediss://``,
            ``redis+unix://`` (needs the ``[redis]`` extra); or ``postgresql://`` /
            ``postgresql+asyncpg://`` (SQLAlchemy and asyncpg). A secret: it may hold a
            password.
        strategy: how windows are counted (all three are atomic on Redis and PostgreSQL).
        key_prefix: key prefix, so several services can share one Redis or one table.
        default_limits: limits the middleware applies to every request, e.g.
            ``["1000/minute", "20/second"]``.
        default_key: what the default limits are counted per.
        on_storage_error: what a policy without its own choice does when storage fails
            (policies marked ``sensitive`` fail closed whatever this says).
        storage_timeout: seconds for a Redis connect and for each command; keep it short, it
            is added to a request whenever Redis is down.
        pool_timeout: seconds a check waits for a free pooled Redis connection. Running out
            is local contention, not a Redis failure: that request alone fails (open or
            closed per its policy) and the storage is not marked degraded. Generous on
            purpose: on a busy worker the wait is the event loop's backlog, which only
            grows if requests are shed and retried.
        degraded_after: consecutive storage errors before the storage is treated as down
            (skipped for ``retry_storage_after``, :attr:`RateLimiter.degraded` set); any
            success resets the count.
        retry_storage_after: seconds to leave a failed storage alone before trying again.
        memory_max_keys: cap on windows the memory storage holds.
        redis_max_connections: Redis connections per process; a burst beyond it waits up
            to ``pool_timeout`` for a free one.
        postgres_schema: schema of the PostgreSQL table ``saasfw_rate_limits`` (None: the
            connection's ``search_path``); created, with the table, on first use.
        postgres_max_connections: PostgreSQL connections per process (a burst beyond it
            waits up to ``pool_timeout``); every process of the fleet holds this many.
        postgres_purge_interval: seconds between deletions of expired windows from the
            PostgreSQL table, by each process (in the background, in batches).
        ipv6_prefix_length: IPv6 clients are counted per network of this size; a single
            host usually owns a whole /64, so per-address counting would be unlimited.
        exempt_paths: exact paths the middleware never limits (health probes, metrics).
        headers: send ``RateLimit``/``RateLimit-Policy`` on allowed responses too (refusals
            always carry them). Off by default, as in slowapi: two more response headers
            cost more server time than the check itself.
        reserve: with Redis or PostgreSQL, the most requests of one key a process counts
            in one round trip and then admits locally (1: a round trip per request). Never
            admits more than the limit; capped at 1/64 of the limit, and never used for
            ``sensitive`` policies or with ``headers`` on (see ``_ratelimit_reserve``).
        reserve_for: seconds a reserved permit may wait to be spent before it is dropped.
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
    pool_timeout: float = Field(default=5.0, gt=0, le=60)
    degraded_after: int = Field(default=3, ge=1, le=100)
    retry_storage_after: float = Field(default=1.0, gt=0, le=300)
    memory_max_keys: int = Field(default=100_000, ge=1)
    redis_max_connections: int = Field(default=50, ge=1, le=10_000)
    postgres_schema: str | None = Field(default=None, pattern=_IDENTIFIER)
    postgres_max_connections: int = Field(default=10, ge=1, le=1_000)
    postgres_purge_interval: float = Field(default=60.0, gt=0, le=86_400)
    ipv6_prefix_length: int = Field(default=64, ge=32, le=128)
    exempt_paths: tuple[str, ...] = ("/livez", "/readyz", "/startupz", "/healthz", "/metrics")
    headers: bool = False
    reserve: int = Field(default=64, ge=1, le=1024)
    reserve_for: float = Field(default=1.0, gt=0, le=10)

    @field_validator("storage_url")
    @classmethod
    def _known_storage(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in _STORAGE_SCHEMES:
            raise ValueError(
                f"rate limit storage scheme {scheme!r} is not supported;"
                " use memory://, redis:// / rediss:// / redis+unix:// or postgresql://"
            )
        return value

    @field_validator("default_limits")
    @classmethod
    def _parseable_limits(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for limit in value:
            parse_limits(limit)
        return value

    @property
    def uses_memory_storage(self) -> bool:
        """True when counters live in this process only."""
        return urlsplit(self.storage_url.get_secret_value()).scheme == "memory"

    @property
    def uses_postgres_storage(self) -> bool:
        """True when counters live in a PostgreSQL table (shared by every process)."""
        return urlsplit(self.storage_url.get_secret_value()).scheme.startswith("postgresql")


def rate_limit_production_problems(settings: RateLimitSettings, *, workers: int) -> list[str]:
    """Production rule: in-memory counters with several workers multiply every limit.

    Returns what is wrong (empty when fine), for the umbrella to register as a
    ``ProductionRule`` with whatever worker count it deploys.
    """
    if settings.enabled and settings.uses_memory_storage and workers > 1:
        return [
            f"rate limiting uses memory:// storage with {workers} workers: each worker counts"
            " separately, so every limit is multiplied by the worker count; set"
            " SAASFW_SECURITY__RATE_LIMIT__STORAGE_URL to a redis:// or postgresql:// URL"
        ]
    return []


def parse_limits(text: str) -> list[RateLimitItem]:
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
        storage_failed: the limit could not be checked (the storage is down, or this
            process was too busy to reach it in time); ``allowed`` then reflects the
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
        on_storage_error: ``open`` or ``closed``; None takes ``closed`` for a sensitive
            policy, else the settings default. An explicit ``open`` on a sensitive policy is
            the documented opt-out.
        cost: how many hits one request consumes.
        sensitive: the policy guards credentials (login, token refresh, API-key creation,
            password change): it fails closed when storage fails even if the global policy
            fails open, since an unlimited password check during a Redis outage is what an
            attacker would wait for.
    """

    name: str
    limits: str
    key: KeyKind | KeyFunction = "address"
    on_storage_error: FailureMode | None = None
    cost: int = 1
    sensitive: bool = False

    def failure_mode(self, default: FailureMode) -> FailureMode:
        """What this policy does when its storage fails, given the settings' default."""
        if self.on_storage_error is not None:
            return self.on_storage_error
        return "closed" if self.sensitive else default

    def __post_init__(self) -> None:
        if not SAFE_KEY.fullmatch(self.name):
            raise ConfigurationError(
                f"rate limit policy name {self.name!r} must be 1-64 characters of"
                " letters, digits and ._:@-"
            )
        if self.cost < 1:
            raise ConfigurationError(f"rate limit policy {self.name!r}: cost must be >= 1")
        try:
            parse_limits(self.limits)
        except ValueError as exc:
            raise ConfigurationError(f"rate limit policy {self.name!r}: {exc}") from None


@dataclass(slots=True)
class CompiledPolicy:
    """A policy prepared for the limiter: parsed limits, memory keys, shared counters."""

    policy: RateLimitPolicy
    items: list[RateLimitItem]
    fail_open: bool
    # (item, window seconds, key suffix) for the memory fast path.
    memory_keys: list[tuple[RateLimitItem, int, str]]

    # The decision for an allowed request whose figures are not wanted (check_nowait).
    admitted: RateLimitDecision
    # Decisions of every policy with this name, indexed like _ratelimit_metrics.OUTCOMES.
    counts: DecisionCounts
    # Client address -> memory key base, for address-keyed policies without trusted
    # proxies (then the key depends on the direct peer alone); bounded, see check_nowait.
    address_bases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls, policy: RateLimitPolicy, fail_open: bool, counts: DecisionCounts
    ) -> CompiledPolicy:
        items = parse_limits(policy.limits)
        keys = [
            (item, item.get_expiry(), f"/{item.amount}/{item.multiples}/{item.GRANULARITY.name}")
            for item in items
        ]
        admitted = RateLimitDecision(True, policy.name, items[0].amount, keys[0][1], 0, 0)
        return cls(policy, items, fail_open, keys, admitted, counts)


def bounded_key(value: str) -> str:
    """A key component that is short and inert whatever the input."""
    if SAFE_KEY.fullmatch(value):
        return value
    return "h." + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
