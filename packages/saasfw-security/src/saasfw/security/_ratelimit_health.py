"""Whether a rate-limit storage is failing: consecutive errors, contention set apart.

One error is not an outage and load is not one either: the storage is ``degraded`` only after
``degraded_after`` storage errors in a row, any success clears it, and failures that say
this process was busy (see ``_ratelimit_storage``) never count. While degraded, checks skip
the storage until ``retry_storage_after`` has passed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from saasfw.security._ratelimit_policy import RateLimitSettings
from saasfw.security._ratelimit_storage import classify_failure

__all__ = ["StorageHealth"]

_log = logging.getLogger("saasfw.security.ratelimit")

Ping = Callable[[], Awaitable[bool]]


class StorageHealth:
    """The failure state of one limiter's storage, and its storage-error and contention
    counts (for metrics)."""

    def __init__(self, settings: RateLimitSettings) -> None:
        self.settings = settings
        self.degraded = False
        self.retry_at = 0.0
        self.consecutive_errors = 0
        # monotonic() of the last storage call that succeeded: a timeout while others
        # succeeded is this process being slow, not the storage.
        self.last_success = 0.0
        self.storage_errors = 0
        self.contention = 0
        self._probe: asyncio.Future[bool] | None = None

    def operation_timeout(self, items: int) -> float:
        """The limiter's own bound on one check of ``items`` limits: each command may wait
        for a pooled connection and then for Redis. A safety net; the pool and socket
        timeouts fire first, and which one fired decides what the failure means."""
        return 2 * items * (self.settings.pool_timeout + self.settings.storage_timeout)

    def skipping(self, now: float) -> bool:
        """True while a degraded storage is being left alone."""
        return self.degraded and now < self.retry_at

    def retry_after(self, now: float) -> int:
        """Whole seconds until the storage is tried again (at least 1)."""
        return max(1, math.ceil(self.retry_at - now))

    async def is_contention(self, exc: BaseException, started: float, ping: Ping) -> bool:
        """True when ``exc`` says this process was busy rather than the storage failing:
        a pool wait that ran out, or a timeout although the storage answers."""
        kind = classify_failure(exc)
        if kind == "timeout":
            return await self.storage_answers(started, ping)
        return kind == "contention"

    async def storage_answers(self, started: float, ping: Ping) -> bool:
        """After a timeout: whether the storage answers all the same (other checks
        succeeded since ``started``, or a PING does now). A starved event loop reads
        replies that arrived in time too late, and its timers all fire at once."""
        if self.last_success > started:
            return True
        # One PING answers for every check that timed out meanwhile. The PING can time out
        # on the same starved loop; other checks succeeding while it waited still count.
        probe = self._probe
        if probe is None or probe.done() or probe.get_loop() is not asyncio.get_running_loop():
            probe = self._probe = asyncio.ensure_future(self._answers(ping))
        return await asyncio.shield(probe) or self.last_success > started

    async def _answers(self, ping: Ping) -> bool:
        try:
            async with asyncio.timeout(self.operation_timeout(1)):
                answered = await ping()
        except Exception as exc:
            return classify_failure(exc) == "contention"
        if answered:
            self.succeeded()
        return answered

    def succeeded(self) -> None:
        """A storage call succeeded: clears the error run and the degraded state."""
        self.last_success = time.monotonic()
        self.consecutive_errors = 0
        if self.degraded:
            _log.warning("rate limit storage recovered")
            self.degraded = False

    def failed(self, exc: BaseException | None) -> None:
        """A storage error (not contention); degrades after ``degraded_after`` in a row."""
        self.storage_errors += 1
        self.consecutive_errors += 1
        if self.degraded or self.consecutive_errors >= self.settings.degraded_after:
            if not self.degraded:
                # The exception type only: a Redis error message can carry the URL.
                _log.error(
                    "rate limit storage failed %d times in a row (last: %s); limits fail"
                    " open or closed per policy",
                    self.consecutive_errors,
                    type(exc).__name__ if exc is not None else "check returned false",
                )
            self.degraded = True
            self.retry_at = time.monotonic() + self.settings.retry_storage_after

    def cancel_probe(self) -> None:
        """Stop a PING in flight (the limiter is closing)."""
        probe, self._probe = self._probe, None
        if probe is not None and not probe.done():
            probe.cancel()
