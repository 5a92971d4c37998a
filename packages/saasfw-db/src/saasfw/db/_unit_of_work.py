"""``UnitOfWork``: one transaction, committed on success, rolled back on any exception."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from saasfw.db._errors import ConcurrentSessionUseError
from saasfw.db._guard import SessionGuard, guard_of
from saasfw.db._translate import translate

logger = logging.getLogger("saasfw.db")


class UnitOfWork:
    """Async context manager around one session and its transaction.

    On a clean exit it commits (a failed commit is rolled back and raised as a saasfw.db
    error). On any exception, including cancellation, it rolls back and re-raises the
    original exception; if the rollback itself fails, that failure is logged and added as
    a note on the original, never substituted for it.

    One task at a time: a second task using the session while another is inside raises
    ``ConcurrentSessionUseError``; the unit then never commits (even if that error was
    swallowed), waits for the statement still running to finish, rolls back and closes,
    so its connection always returns to the pool.

    Example:
        async with db.unit_of_work() as uow:
            orders = OrderRepository(uow.session)
            await orders.add(Order(total=10))
            async with uow.savepoint():
                ...  # failure here undoes only the savepoint
    """

    __slots__ = ("_factory", "_session")

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = session_factory
        self._session: AsyncSession | None = None

    @property
    def session(self) -> AsyncSession:
        """The session of this unit of work (only inside ``async with``)."""
        if self._session is None:
            raise RuntimeError("UnitOfWork.session is only available inside 'async with'")
        return self._session

    async def __aenter__(self) -> UnitOfWork:
        if self._session is not None:
            raise RuntimeError("a UnitOfWork cannot be entered twice; create a new one")
        self._session = self._factory()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self.session
        guard = guard_of(session)
        if guard is None:
            await _end(session, None, exc)
            return
        ender = asyncio.current_task()
        guard.closer = ender  # from here on every other task is refused
        if guard.busy_elsewhere():
            # Another task's statement is still running on this session (concurrent
            # misuse): roll back and close only once it is over, and finish that even if
            # this task is cancelled meanwhile, so the connection always returns.
            await _shielded(_end_after_others(session, guard, exc, ender))
        else:
            await _end(session, guard, exc)

    async def commit(self) -> None:
        """Commit now and keep working in a new transaction on the same session."""
        guard = guard_of(self.session)
        if guard is not None and guard.misused:
            raise _misuse_error()  # the unit of work rolls back when it ends
        await self._commit(self.session)

    @staticmethod
    async def _commit(session: AsyncSession) -> None:
        try:
            await session.commit()
        except BaseException as error:
            await _rollback_quietly(session, error)
            translated = translate(error)
            if translated is None or translated is error:
                raise
            raise translated from error

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[AsyncSession]:
        """A nested transaction: an exception inside rolls back to the savepoint only.

        The exception still propagates (translated to a saasfw.db error when it is a
        database error); catch it to continue the outer unit of work.
        """
        session = self.session
        try:
            # SQLAlchemy's transaction context manager knows every state the savepoint can
            # be in after a failed flush (deactivated but not yet rolled back).
            async with session.begin_nested():
                yield session
        except Exception as error:
            translated = translate(error)
            if translated is None or translated is error:
                raise
            raise translated from error


async def _end(
    session: AsyncSession, guard: SessionGuard | None, exc: BaseException | None
) -> None:
    """Commit (clean exit, no misuse) or roll back, then close: the connection returns."""
    misuse = _misuse_error() if exc is None and guard is not None and guard.misused else None
    try:
        if exc is None and misuse is None:
            await UnitOfWork._commit(session)
        else:
            await _rollback_quietly(session, exc or cast(BaseException, misuse))
    finally:
        await _close_quietly(session, exc or misuse)
    if misuse is not None:
        # The error was swallowed inside (e.g. gather(return_exceptions=True)): the work
        # of the unit is incomplete, so it is not committed, and the caller must know.
        raise misuse


async def _end_after_others(
    session: AsyncSession,
    guard: SessionGuard,
    exc: BaseException | None,
    ender: asyncio.Task[Any] | None,
) -> None:
    guard.closer = asyncio.current_task()
    try:
        await guard.wait_until_idle()
        await _end(session, guard, exc)
    finally:
        guard.closer = ender  # as after any unit of work: only its own task may go on


_ENDING: set[asyncio.Future[None]] = set()


async def _shielded(ending: Coroutine[Any, Any, None]) -> None:
    """Run ``ending`` to completion even if the awaiting task is cancelled."""
    task = asyncio.ensure_future(ending)
    _ENDING.add(task)  # a strong reference until it is done
    task.add_done_callback(_forget)
    await asyncio.shield(task)


def _forget(task: asyncio.Future[None]) -> None:
    _ENDING.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # Already raised to the waiting task, unless it was cancelled: keep a trace.
        logger.debug("ending a unit of work raised", exc_info=task.exception())


def _misuse_error() -> ConcurrentSessionUseError:
    return ConcurrentSessionUseError(
        "several tasks used this unit of work's session at the same time, so it was rolled "
        "back instead of committed; run one task per unit of work, or give each task its "
        "own unit of work"
    )


def _note_rollback_failure(original: BaseException, rollback_error: BaseException) -> None:
    logger.warning(
        "rollback failed after %s; the original error is re-raised",
        type(original).__name__,
        exc_info=rollback_error,
    )
    original.add_note(f"saasfw.db: the rollback also failed ({type(rollback_error).__name__})")


async def _rollback_quietly(session: AsyncSession, original: BaseException) -> None:
    try:
        await session.rollback()
    except Exception as rollback_error:
        _note_rollback_failure(original, rollback_error)


async def _close_quietly(session: AsyncSession, original: BaseException | None) -> None:
    try:
        await session.close()
    except Exception as close_error:
        if original is None:
            raise
        logger.warning("closing the session failed after an error", exc_info=close_error)
