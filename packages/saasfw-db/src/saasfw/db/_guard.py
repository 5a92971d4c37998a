"""The single-task guard of a session: one task inside at a time, nobody after the end.

Two tasks awaiting one ``AsyncSession`` at once interleave statements on one connection;
SQLAlchemy notices only sometimes (``IllegalStateChangeError``), and then neither rollback
nor close can run while the other task's statement is still in flight, so the connection
never returns to the pool. The guard refuses the second task before it touches the
session, remembers that the session was misused (its unit of work must not commit), lets
the unit of work wait until the task still inside has left, and refuses every other task
once the unit of work is ending.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from saasfw.db._errors import ConcurrentSessionUseError

_WHAT_TO_DO = (
    "an AsyncSession is not safe for concurrent use: run one task per unit of work, or "
    "give each task its own unit of work (Database.unit_of_work() or Database.session())"
)


class SessionGuard:
    """Who is inside a session, whether it was misused, and who may still use it."""

    __slots__ = ("closer", "depth", "idle", "misused", "owner")

    def __init__(self) -> None:
        self.owner: asyncio.Task[Any] | None = None
        self.depth = 0
        self.misused = False
        # Set when the unit of work starts ending: only this task may use the session.
        self.closer: asyncio.Task[Any] | None = None
        # Created only when someone waits for the owner to leave (rare: misuse only).
        self.idle: asyncio.Event | None = None

    def refuse(self) -> ConcurrentSessionUseError:
        """The error for a task entering while it may not; marks the session misused."""
        self.misused = True
        if self.closer is not None:
            return ConcurrentSessionUseError(
                "this session's unit of work has ended or is ending (it is rolled back "
                f"because of concurrent use, or finished) and another task used it; {_WHAT_TO_DO}"
            )
        return ConcurrentSessionUseError(
            "this session is already running an operation in another task; its unit of work "
            f"will be rolled back; {_WHAT_TO_DO}"
        )

    def busy_elsewhere(self) -> bool:
        """Whether a task other than the current one is inside the session right now."""
        return self.owner is not None and self.owner is not asyncio.current_task()

    async def wait_until_idle(self) -> None:
        """Wait until no other task is inside (its statement finished, however it ended)."""
        while self.busy_elsewhere():
            if self.idle is None:
                self.idle = asyncio.Event()
            await self.idle.wait()


def guard_of(session: object) -> SessionGuard | None:
    """The guard of ``session`` (None for a session class without one)."""
    guard = getattr(session, "_saasfw_guard", None)
    return guard if isinstance(guard, SessionGuard) else None


_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


def guarded(method: _F) -> _F:
    """Wrap an ``AsyncSession`` method so only one task at a time (and no straggler) runs it."""

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        guard: SessionGuard = self._saasfw_guard
        task = asyncio.current_task()
        owner = guard.owner
        if (owner is not None and owner is not task) or (
            guard.closer is not None and guard.closer is not task
        ):
            raise guard.refuse()
        guard.owner = task
        guard.depth += 1
        try:
            return await method(self, *args, **kwargs)
        finally:
            # Inline (no method call): this runs around every statement.
            guard.depth -= 1
            if guard.depth == 0:
                guard.owner = None
                if guard.idle is not None:
                    guard.idle.set()
                    guard.idle = None

    return cast(_F, wrapper)


_S = TypeVar("_S", bound=Callable[..., Any])


def checked(method: _S) -> _S:
    """Wrap a synchronous ``AsyncSession`` method (``add``): refuse it while another task is inside.

    It never waits, so it only checks; without this, ``add`` during another task's flush
    gets SQLAlchemy's warning and a corrupt flush instead of the typed error.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        guard: SessionGuard = self._saasfw_guard
        task = asyncio.current_task()
        if (guard.owner is not None and guard.owner is not task) or (
            guard.closer is not None and guard.closer is not task
        ):
            raise guard.refuse()
        return method(self, *args, **kwargs)

    return cast(_S, wrapper)
