"""``BackgroundLoop``: one ``run()`` coroutine as a task, started and stopped with the app.

The outbox relay and the job scheduler both run a loop for the life of a process; this is
their shared start/stop and ``async with`` behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

__all__ = ["BackgroundLoop"]


class BackgroundLoop:
    """Subclasses implement :meth:`run` and name their task with :attr:`task_name`."""

    _task: asyncio.Task[None] | None = None

    @property
    def task_name(self) -> str:
        """The asyncio task's name (shown in task dumps)."""
        return type(self).__name__

    async def run(self) -> None:  # pragma: no cover - every subclass has its own
        """The loop; runs until cancelled."""
        raise NotImplementedError

    async def start(self) -> None:
        """Run :meth:`run` as a background task (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=self.task_name)

    async def stop(self) -> None:
        """Cancel the loop and wait until it has ended (its work is left for a later run)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
