"""``UnitOfWork``: one transaction, committed on success, rolled back on any exception."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from saasfw.db._translate import translate

logger = logging.getLogger("saasfw.db")


class UnitOfWork:
    """Async context manager around one session and its transaction.

    On a clean exit it commits (a failed commit is rolled back and raised as a saasfw.db
    error). On any exception, including cancellation, it rolls back and re-raises the
    original exception; if the rollback itself fails, that failure is logged and added as
    a note on the original, never substituted for it.

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
        try:
            if exc is None:
                await self._commit(session)
            else:
                await _rollback_quietly(session, exc)
        finally:
            await _close_quietly(session, exc)

    async def commit(self) -> None:
        """Commit now and keep working in a new transaction on the same session."""
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
