"""Draining at shutdown: stop taking messages, let in-flight handlers finish, return the rest.

On SIGTERM the lifespan calls the broker consumer's ``drain(budget)``: new deliveries are
not started (RabbitMQ gets them back when the channel closes, JetStream at once), the
handlers already running get ``budget`` seconds to finish (and acknowledge), and those
still running then are cancelled: their transaction rolls back and their message goes
back to the broker, which delivers it to another replica or after the restart. Then the
subscriber stops. Nothing is lost, and with the
inbox nothing is applied twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["DrainReport", "InFlight"]


@dataclass(frozen=True, slots=True)
class DrainReport:
    """What a drain did: handlers that finished within the budget, messages handed back."""

    finished: int
    returned: int


class InFlight:
    """The handler tasks running now, and whether the consumer is draining."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self.draining = False

    def __len__(self) -> int:
        return len(self._tasks)

    @contextmanager
    def track(self) -> Iterator[None]:
        """Count the current task as in flight while the block runs."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - always inside a task under asyncio
            yield
            return
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    async def drain(self, stop: Callable[[], Awaitable[None]], budget: float) -> DrainReport:
        """Refuse new work, wait up to ``budget`` seconds, cancel the rest, then ``stop``.

        ``stop`` (the subscriber's) runs last: FastStream's own stop waits for running
        handlers with the broker's ``graceful_timeout``, which must not replace the budget.
        """
        self.draining = True
        running = set(self._tasks)
        done: set[asyncio.Task[object]] = set()
        pending: set[asyncio.Task[object]] = set()
        if running:
            done, pending = await asyncio.wait(running, timeout=budget)
        for task in pending:
            task.cancel()
        if pending:
            # Cancelled handlers hand their message back; give them a moment to do so.
            await asyncio.wait(pending, timeout=5.0)
        await stop()
        return DrainReport(finished=len(done), returned=len(pending))
