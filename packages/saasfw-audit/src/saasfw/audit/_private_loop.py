"""``PrivateEngine``: an async SQLAlchemy engine on its own event loop and thread.

Synchronous callers (the logger's pipeline thread, a request handler's thread) use it
without sharing the application's loop; it closes its pooled connections on its own loop
when closed, when garbage-collected or at interpreter exit, so none is left for the
garbage collector to find open.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from saasfw.audit._errors import AuditConfigError, MissingExtraError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["PrivateEngine", "dispose_all"]


class PrivateEngine:
    """An engine for ``url`` (PostgreSQL or SQLite) with its private loop and thread."""

    def __init__(self, url: str, *, where: str, thread_name: str) -> None:
        import asyncio

        from sqlalchemy.ext.asyncio import create_async_engine

        try:
            engine = create_async_engine(url, pool_pre_ping=True)
        except ImportError as exc:
            extra = {"asyncpg": "postgres", "aiosqlite": "sqlite"}.get(exc.name or "", "")
            raise MissingExtraError(extra or "postgres", exc.name or "the driver") from exc
        if engine.dialect.name not in ("postgresql", "sqlite"):
            raise AuditConfigError(
                f"runs on PostgreSQL or SQLite, not {engine.dialect.name}", where=where
            )
        self.engine: AsyncEngine = engine
        self.loop = asyncio.new_event_loop()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=thread_name)
        self.worker = self.executor.submit(threading.get_ident).result()

    def run(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run the coroutine ``factory()`` makes on the private loop; wait for its result."""
        loop = self.loop
        return self.executor.submit(lambda: loop.run_until_complete(factory())).result()

    def dispose(self) -> None:
        """Close the pooled connections on their own loop, then stop the thread."""
        if threading.get_ident() == self.worker:
            return  # collected on our own thread: waiting for it would never end
        try:
            self.run(self.engine.dispose)
            self.executor.submit(self.loop.close).result()
            self.executor.shutdown()
        except RuntimeError:  # the executor already stopped (interpreter exit): loop is idle
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(self.engine.dispose())
                self.loop.close()


def dispose_all(holder: list[PrivateEngine]) -> None:
    """Dispose of the engines in ``holder`` (a finalizer's target: it holds no owner)."""
    while holder:
        holder.pop().dispose()
