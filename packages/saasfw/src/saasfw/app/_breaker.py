"""The circuit breaker in front of each downstream service (closed, open, half-open)."""

from __future__ import annotations

import logging
import time

from saasfw.app._errors import CircuitOpenError

__all__ = ["CircuitBreaker"]

_log = logging.getLogger("saasfw.app.clients")


class CircuitBreaker:
    """Closed → open after ``failures`` consecutive failures → half-open after ``reset``.

    While open every call is refused at once (no socket, no waiting); in half-open one
    trial call goes through: success closes the breaker, failure opens it again.
    """

    def __init__(self, name: str, *, failures: int, reset: float) -> None:
        self.name = name
        self.threshold = failures
        self.reset = reset
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self.opened_at is None:
            return "closed"
        if time.monotonic() - self.opened_at >= self.reset:
            return "half-open"
        return "open"

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` unless a call may go through now."""
        state = self.state
        if state == "closed":
            return
        if state == "half-open" and not self._trial_running:
            self._trial_running = True
            return
        opened = self.opened_at if self.opened_at is not None else time.monotonic()
        remaining = max(0.0, self.reset - (time.monotonic() - opened))
        raise CircuitOpenError(self.name, max(1.0, remaining))

    def record(self, *, ok: bool) -> None:
        """Count the outcome of a call that went through."""
        self._trial_running = False
        if ok:
            if self.opened_at is not None:
                _log.info("circuit to %s closed again", self.name)
            self.consecutive_failures = 0
            self.opened_at = None
            return
        self.consecutive_failures += 1
        if self.opened_at is not None or self.consecutive_failures >= self.threshold:
            if self.opened_at is None:
                _log.warning(
                    "circuit to %s opened after %d consecutive failures",
                    self.name,
                    self.consecutive_failures,
                )
            self.opened_at = time.monotonic()
