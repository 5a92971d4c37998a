"""A registry of named async health checks with groups, per-check timeouts and a short cache."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from saasfw.k8s._errors import HealthConfigError

logger = logging.getLogger("saasfw.k8s.health")

HealthCheck = Callable[[], Awaitable[None]]
"""A check: an ``async () -> None`` that returns when healthy and raises when not."""

LIVE = "live"
READY = "ready"
STARTUP = "startup"
STANDARD_GROUPS = (LIVE, READY, STARTUP)

_NAME = re.compile(r"^[a-z0-9]([a-z0-9_.-]{0,62}[a-z0-9])?$")


class Status(StrEnum):
    """Outcome of a check or a group."""

    UP = "UP"
    DOWN = "DOWN"
    DEGRADED = "DEGRADED"
    """A failing non-critical check: shown in the details, the group stays UP."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one run of one check.

    ``error`` is the exception class name or a timeout note, never the exception message:
    probe endpoints are unauthenticated and messages can carry hosts, users or queries.
    """

    name: str
    status: Status
    duration_seconds: float
    error: str | None = None
    finished_at: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status.value,
            "duration_ms": round(self.duration_seconds * 1000.0, 3),
            "cached": self.cached,
        }
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The aggregated state of a group: UP only when every check in it is UP."""

    group: str
    status: Status
    checks: tuple[CheckResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "group": self.group,
            "checks": {result.name: result.to_dict() for result in self.checks},
            **({"degraded": degraded} if (degraded := self.degraded) else {}),
        }

    @property
    def degraded(self) -> list[str]:
        """Names of the failing non-critical checks (the group may still be UP)."""
        return [result.name for result in self.checks if result.status is Status.DEGRADED]


@dataclass(slots=True)
class _Entry:
    check: HealthCheck
    groups: frozenset[str]
    timeout: float
    critical: bool = True
    last: CheckResult | None = None
    running: asyncio.Task[CheckResult] | None = field(default=None, repr=False)


class HealthRegistry:
    """Named async checks, each in one or more groups, each with its own timeout.

    Results are cached for ``cache_ttl`` seconds and concurrent probes of the same check share
    one run, so a probe storm costs one call per check per TTL. Groups ``live``, ``ready`` and
    ``startup`` always exist (empty groups are UP); any other group is created by naming it.
    Checks go to ``ready`` unless told otherwise: liveness must never depend on an external
    service, or an outage of that service restarts every pod at once.
    """

    def __init__(
        self,
        *,
        cache_ttl: float = 1.0,
        default_timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_ttl < 0:
            raise HealthConfigError(f"cache_ttl must be >= 0, got {cache_ttl}", where="cache_ttl")
        if default_timeout <= 0:
            raise HealthConfigError(
                f"default_timeout must be > 0, got {default_timeout}", where="default_timeout"
            )
        self._cache_ttl = cache_ttl
        self._default_timeout = default_timeout
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def add(
        self,
        name: str,
        check: HealthCheck,
        *,
        groups: Iterable[str] = (READY,),
        timeout: float | None = None,
        critical: bool = True,
    ) -> None:
        """Register ``check`` under ``name`` in ``groups`` (default: readiness only).

        A non-critical check (``critical=False``) that fails is reported ``DEGRADED``: its
        group stays UP, so a replica stays in rotation while, say, a broker is away and its
        outbox holds the events.

        Raises:
            HealthConfigError: the name is taken or invalid, no group is given, a group name is
                invalid, or the timeout is not positive.
        """
        if not _NAME.match(name):
            raise HealthConfigError(
                f"check name {name!r} must be 1-64 lowercase letters, digits, '_', '.', '-'",
                where=name,
            )
        if name in self._entries:
            raise HealthConfigError(f"a check named {name!r} is already registered", where=name)
        group_set = frozenset(groups)
        if not group_set:
            raise HealthConfigError(f"check {name!r} must belong to at least one group", where=name)
        for group in group_set:
            if not _NAME.match(group):
                raise HealthConfigError(
                    f"group name {group!r} of check {name!r} must be lowercase letters, digits, "
                    "'_', '.', '-'",
                    where=name,
                )
        effective = self._default_timeout if timeout is None else timeout
        if effective <= 0:
            raise HealthConfigError(f"timeout of check {name!r} must be > 0", where=name)
        self._entries[name] = _Entry(
            check=check, groups=group_set, timeout=effective, critical=critical
        )

    def remove(self, name: str) -> None:
        """Unregister a check; unknown names raise ``HealthConfigError``."""
        if self._entries.pop(name, None) is None:
            raise HealthConfigError(f"no check named {name!r} is registered", where=name)

    @property
    def groups(self) -> frozenset[str]:
        """Every group with a route: the standard three plus those named by checks."""
        named = {group for entry in self._entries.values() for group in entry.groups}
        return frozenset(STANDARD_GROUPS) | named

    @property
    def max_timeout(self) -> float:
        """The longest check timeout (the default when no check is registered)."""
        return max((e.timeout for e in self._entries.values()), default=self._default_timeout)

    def names(self, group: str | None = None) -> list[str]:
        """Check names, all or of one group, in registration order."""
        return [n for n, e in self._entries.items() if group is None or group in e.groups]

    async def check_group(self, group: str) -> HealthReport:
        """Run (or reuse cached results of) the checks of ``group`` concurrently."""
        if group not in self.groups:
            raise HealthConfigError(f"no health group named {group!r}", where=group)
        return await self._report(group, self.names(group))

    async def check_all(self) -> HealthReport:
        """Run every registered check once; the report's group is ``"all"``."""
        return await self._report("all", self.names())

    async def _report(self, group: str, names: list[str]) -> HealthReport:
        results = await asyncio.gather(*(self._result(name) for name in names))
        return HealthReport(group=group, status=group_status(results), checks=tuple(results))

    async def _result(self, name: str) -> CheckResult:
        entry = self._entries[name]
        now = self._clock()
        last = entry.last
        if last is not None and now - last.finished_at < self._cache_ttl:
            return _as_cached(last)
        running = entry.running
        loop = asyncio.get_running_loop()
        if running is None or running.done() or running.get_loop() is not loop:
            running = loop.create_task(self._run(name, entry), name=f"health-check:{name}")
            entry.running = running
        # shield: one impatient prober disconnecting must not cancel the run others await.
        return await asyncio.shield(running)

    async def _run(self, name: str, entry: _Entry) -> CheckResult:
        started = time.perf_counter()
        error: str | None = None
        try:
            async with asyncio.timeout(entry.timeout) as scope:
                await entry.check()
        except TimeoutError as exc:
            expired = scope.expired()
            error = f"timed out after {entry.timeout:g}s" if expired else type(exc).__name__
            logger.warning("health check %s is down: %s", name, error)
        except Exception as exc:
            error = type(exc).__name__
            logger.warning("health check %s is down: %s", name, error, exc_info=exc)
        failed = Status.DOWN if entry.critical else Status.DEGRADED
        result = CheckResult(
            name=name,
            status=Status.UP if error is None else failed,
            duration_seconds=time.perf_counter() - started,
            error=error,
            finished_at=self._clock(),
        )
        entry.last = result
        return result


def group_status(results: Iterable[CheckResult]) -> Status:
    """UP unless a critical check is DOWN (degraded checks keep their group UP)."""
    return Status.DOWN if any(r.status is Status.DOWN for r in results) else Status.UP


def _as_cached(result: CheckResult) -> CheckResult:
    return CheckResult(
        name=result.name,
        status=result.status,
        duration_seconds=result.duration_seconds,
        error=result.error,
        finished_at=result.finished_at,
        cached=True,
    )
