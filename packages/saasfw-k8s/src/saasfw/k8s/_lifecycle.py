"""Availability state, drain and ordered shutdown hooks of one service process."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from saasfw.k8s._errors import LifecycleError
from saasfw.k8s._settings import LifecycleSettings

logger = logging.getLogger("saasfw.k8s.lifecycle")

ShutdownHook = Callable[[], Awaitable[None]]
"""An ``async () -> None`` run once at shutdown (audit flush, database close, ...)."""

InnerLifespan = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]


class AvailabilityState(StrEnum):
    """Where the process is in its life; only ever moves forward."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


_ORDER = {state: index for index, state in enumerate(AvailabilityState)}


@dataclass(frozen=True, slots=True)
class HookOutcome:
    """What happened to one shutdown hook."""

    name: str
    ok: bool
    duration_seconds: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Hook:
    name: str
    hook: ShutdownHook
    timeout: float | None


# Lifecycles whose lifespan is running in this process: a SIGTERM drains them all (signals are
# process-wide, and this lets `saasfw-k8s serve module:app` drain without extra wiring).
_RUNNING: weakref.WeakSet[Lifecycle] = weakref.WeakSet()


def running_lifecycles() -> list[Lifecycle]:
    """The lifecycles whose lifespan has started and not finished in this process."""
    return list(_RUNNING)


class Lifecycle:
    """Availability state (starting, ready, draining, stopped) plus ordered shutdown hooks.

    Use ``lifecycle.lifespan`` (or ``lifecycle.wrap(your_lifespan)``) as the app's lifespan:
    the state is ``ready`` once startup has finished; at shutdown the state turns
    ``draining``, your lifespan exits, then the shutdown hooks run in reverse order of
    registration (like a stack: register the tracer before the database before the audit
    logger, and the audit log is flushed first, then the database closed, then spans exported),
    each bounded by its timeout and all together by ``shutdown_timeout_seconds``. A failing
    or hanging hook is logged and reported; the others still run.
    """

    def __init__(self, settings: LifecycleSettings | None = None) -> None:
        self.settings = settings or LifecycleSettings()
        self._state = AvailabilityState.STARTING
        self._hooks: list[_Hook] = []
        self._outcomes: tuple[HookOutcome, ...] = ()
        self._drain_started: float | None = None

    @property
    def state(self) -> AvailabilityState:
        return self._state

    @property
    def outcomes(self) -> tuple[HookOutcome, ...]:
        """What each shutdown hook did at the last shutdown (empty before)."""
        return self._outcomes

    def _advance(self, state: AvailabilityState) -> bool:
        if _ORDER[state] <= _ORDER[self._state]:
            return False
        logger.info("availability %s -> %s", self._state.value, state.value)
        self._state = state
        return True

    def mark_ready(self) -> None:
        """Move from ``starting`` to ``ready`` (the lifespan does this after startup)."""
        self._advance(AvailabilityState.READY)

    def begin_drain(self) -> bool:
        """Turn readiness off at once; safe to call from a signal handler.

        Returns:
            True when this call started the drain, False when it was already draining/stopped.
        """
        started = self._advance(AvailabilityState.DRAINING)
        if started:
            self._drain_started = time.monotonic()
        return started

    async def drain(self, in_flight: Callable[[], int]) -> bool:
        """Wait until ``in_flight()`` reads zero twice in a row, or the drain timeout passes.

        Starts the drain if it has not started. Returns True when drained, False on timeout.
        """
        self.begin_drain()
        started = self._drain_started if self._drain_started is not None else time.monotonic()
        deadline = started + self.settings.drain_timeout_seconds
        interval = self.settings.drain_poll_interval_seconds
        quiet = 0
        while True:
            quiet = quiet + 1 if in_flight() == 0 else 0
            if quiet >= 2:
                return True
            if time.monotonic() >= deadline:
                logger.warning(
                    "drain timeout of %gs passed with %d request(s) in flight",
                    self.settings.drain_timeout_seconds,
                    in_flight(),
                )
                return False
            await asyncio.sleep(interval)

    def add_shutdown_hook(
        self, name: str, hook: ShutdownHook, *, timeout: float | None = None
    ) -> None:
        """Register ``hook`` to run at shutdown; hooks run last-registered first.

        Raises:
            LifecycleError: the name is taken, the timeout is not positive, or shutdown began.
        """
        if any(existing.name == name for existing in self._hooks):
            raise LifecycleError(
                f"a shutdown hook named {name!r} is already registered", where=name
            )
        if timeout is not None and timeout <= 0:
            raise LifecycleError(f"timeout of shutdown hook {name!r} must be > 0", where=name)
        if _ORDER[self._state] >= _ORDER[AvailabilityState.DRAINING]:
            raise LifecycleError(
                f"cannot register shutdown hook {name!r}: shutdown has begun", where=name
            )
        self._hooks.append(_Hook(name=name, hook=hook, timeout=timeout))

    async def run_shutdown_hooks(self) -> tuple[HookOutcome, ...]:
        """Run every hook once, newest first, within the shutdown budget; then ``stopped``."""
        self.begin_drain()
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds
        outcomes: list[HookOutcome] = []
        for item in reversed(self._hooks):
            remaining = deadline - time.monotonic()
            budget = remaining if item.timeout is None else min(item.timeout, remaining)
            outcomes.append(await self._run_hook(item, budget))
        self._outcomes = tuple(outcomes)
        self._advance(AvailabilityState.STOPPED)
        return self._outcomes

    @staticmethod
    async def _run_hook(item: _Hook, budget: float) -> HookOutcome:
        started = time.perf_counter()
        if budget <= 0:
            logger.error("shutdown hook %s skipped: shutdown budget exhausted", item.name)
            return HookOutcome(item.name, ok=False, duration_seconds=0.0, error="budget exhausted")
        try:
            async with asyncio.timeout(budget) as scope:
                await item.hook()
        except TimeoutError as exc:
            error = f"timed out after {budget:.3g}s" if scope.expired() else type(exc).__name__
            logger.error("shutdown hook %s failed: %s", item.name, error)
            return HookOutcome(item.name, False, time.perf_counter() - started, error)
        except Exception as exc:
            logger.error("shutdown hook %s failed", item.name, exc_info=exc)
            return HookOutcome(item.name, False, time.perf_counter() - started, type(exc).__name__)
        return HookOutcome(item.name, ok=True, duration_seconds=time.perf_counter() - started)

    def wrap(
        self, inner: InnerLifespan | None = None
    ) -> Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any]]]:
        """A lifespan that runs ``inner`` (your own lifespan) inside the availability cycle."""

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[Mapping[str, Any]]:
            if self._state is not AvailabilityState.STARTING:
                raise LifecycleError("a Lifecycle runs one lifespan once; create a new one")
            _RUNNING.add(self)
            try:
                if inner is None:
                    self.mark_ready()
                    yield {}
                else:
                    async with inner(app) as state:
                        self.mark_ready()
                        try:
                            yield dict(state or {})
                        finally:
                            # Draining before your lifespan exits: readiness is off first.
                            self.begin_drain()
            finally:
                self.begin_drain()
                try:
                    await self.run_shutdown_hooks()
                finally:
                    _RUNNING.discard(self)

        return lifespan

    def lifespan(self, app: Any) -> AbstractAsyncContextManager[Mapping[str, Any]]:
        """The lifespan to pass to ``FastAPI(lifespan=...)`` / ``Starlette(lifespan=...)``."""
        return self.wrap()(app)
