"""``Database``: the engine, session factory, lifespan and health check of one service."""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from saasfw.core import ActorIdProvider
from saasfw.db._errors import ConflictError, DatabaseUnavailableError, MissingExtraError
from saasfw.db._paging import CursorCodec, PagingPolicy
from saasfw.db._session import (
    ACTOR_KEY,
    SETTINGS_KEY,
    TENANT_KEY,
    GuardedAsyncSession,
    TenantProvider,
)
from saasfw.db._settings import Backend, DbSettings, validate_identifier
from saasfw.db._translate import sqlite_error_code, translate
from saasfw.db._unit_of_work import UnitOfWork

_SQLITE_BUSY = 5
_SQLITE_HAS_READ = "saasfw.db.sqlite_has_read"


class Database:
    """Everything one service needs to talk to its own database.

    Building it opens no connection (it only creates the SQLite file's directory);
    connections are made on first use. Use ``lifespan`` (or
    ``startup``/``close``) from the application's lifespan so the pool is disposed on
    shutdown.

    Args:
        settings: the service's ``DbSettings``.
        service: the service name: SQLite file name, default PostgreSQL schema and
            ``application_name``.
        actor_provider: port returning the acting principal's id for ``created_by`` and
            ``updated_by`` (``saasfw.core.ActorIdProvider``; None: anonymous).
        tenant_provider: port returning the current tenant for ``TenantMixin`` models.
    """

    def __init__(
        self,
        settings: DbSettings,
        *,
        service: str,
        actor_provider: ActorIdProvider | None = None,
        tenant_provider: TenantProvider | None = None,
        application_name: str | None = None,
    ) -> None:
        self.settings = settings
        self.service = validate_identifier(service, "service")
        self.backend: Backend = settings.backend()
        self.schema: str | None = (
            (settings.schema_name or self.service) if self.backend == "postgresql" else None
        )
        self.application_name = application_name or f"saasfw-{self.service}"
        self.url: URL = settings.sqlalchemy_url(self.service)
        self.engine: AsyncEngine = self._create_engine()
        secret = settings.cursor_secret
        self.cursor_codec = CursorCodec(
            secret.get_secret_value().encode() if secret is not None else secrets.token_bytes(32)
        )
        self.paging = PagingPolicy(
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
            max_offset=settings.max_offset,
        )
        self.session_factory: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine,
            class_=GuardedAsyncSession,
            expire_on_commit=False,
            info={
                ACTOR_KEY: actor_provider,
                TENANT_KEY: tenant_provider,
                SETTINGS_KEY: (self.paging, self.cursor_codec),
            },
        )

    def __repr__(self) -> str:
        # The URL may hold a password: show only what identifies the database.
        return (
            f"Database(service={self.service!r}, backend={self.backend!r}, "
            f"url={self.url.render_as_string(hide_password=True)!r})"
        )

    def _create_engine(self) -> AsyncEngine:
        s = self.settings
        pool: dict[str, Any] = {
            "pool_size": s.pool_size,
            "max_overflow": s.max_overflow,
            "pool_timeout": s.pool_timeout,
            "pool_recycle": s.pool_recycle,
            "pool_pre_ping": s.pool_pre_ping,
            "echo": s.echo,
            "hide_parameters": not s.echo,
        }
        if self.backend == "postgresql":
            if importlib.util.find_spec("asyncpg") is None:
                raise MissingExtraError("postgres", "asyncpg")
            server_settings = {
                "search_path": f'"{self.schema}"',
                "application_name": self.application_name,
            }
            if s.statement_timeout is not None:
                server_settings["statement_timeout"] = str(int(s.statement_timeout * 1000))
            return create_async_engine(
                self.url,
                connect_args={"server_settings": server_settings, "timeout": s.connect_timeout},
                **pool,
            )
        database = self.url.database
        if not database or database == ":memory:":
            # One shared in-memory connection (StaticPool): pool sizing does not apply.
            pool = {"echo": s.echo, "hide_parameters": not s.echo}
        elif not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            self.url, connect_args={"timeout": s.sqlite_busy_timeout}, **pool
        )
        _configure_sqlite(engine, busy_timeout_ms=int(s.sqlite_busy_timeout * 1000))
        return engine

    def session(self) -> AsyncSession:
        """A new session (you commit and close it); prefer ``unit_of_work``."""
        return self.session_factory()

    def unit_of_work(self) -> UnitOfWork:
        """A new ``UnitOfWork``: ``async with db.unit_of_work() as uow: ...``."""
        return UnitOfWork(self.session_factory)

    async def session_dependency(self) -> AsyncIterator[AsyncSession]:
        """FastAPI dependency: one session per request inside a unit of work.

        Declare it with ``Depends(db.session_dependency, scope="function")`` (or use
        ``db.depends()``) so the commit happens before the response is sent and a failed
        commit becomes an error response instead of a silent 200.
        """
        async with self.unit_of_work() as uow:
            yield uow.session

    def depends(self) -> Any:
        """``Depends(self.session_dependency, scope="function")`` for ``Annotated`` aliases."""
        from fastapi import Depends

        return Depends(self.session_dependency, scope="function")

    async def startup(self) -> None:
        """Check connectivity within ``health_timeout``; raises DatabaseUnavailableError."""
        await self.health_check()

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Lifespan: ``startup`` on enter, ``close`` on exit (composes with your own)."""
        await self.startup()
        try:
            yield
        finally:
            await self.close()

    async def health_check(self) -> None:
        """Run ``SELECT 1`` within ``health_timeout`` seconds; raise when the database is down.

        Matches the health-check port ``async () -> None`` (raise = down).
        """
        try:
            async with asyncio.timeout(self.settings.health_timeout):
                async with self.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except TimeoutError as error:
            raise DatabaseUnavailableError(
                f"health check exceeded {self.settings.health_timeout}s"
            ) from error
        except Exception as error:
            translated = translate(error)
            raise (translated or DatabaseUnavailableError("health check failed")) from error


def _configure_sqlite(engine: AsyncEngine, *, busy_timeout_ms: int) -> None:
    """WAL, foreign keys, busy timeout; and SQLAlchemy-controlled BEGIN for real savepoints."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # Take BEGIN away from the sqlite3 driver (legacy mode skips it before SELECT and
        # SAVEPOINT); SQLAlchemy emits it below, so savepoints nest inside transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")
        connection.info[_SQLITE_HAS_READ] = False

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _track_reads(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not connection.info.get(_SQLITE_HAS_READ, True):
            head = statement.lstrip()[:6].upper()
            if head.startswith(("SELECT", "WITH")):
                connection.info[_SQLITE_HAS_READ] = True

    @event.listens_for(engine.sync_engine, "handle_error")
    def _busy_after_read_is_a_conflict(context: ExceptionContext) -> BaseException | None:
        # A transaction holding a read snapshot that tries to write while another
        # connection writes gets SQLITE_BUSY at once (SQLite does not wait: waiting could
        # deadlock). That is a lost race between two transactions, i.e. a conflict to
        # retry, not an unavailable database (which is SQLITE_BUSY after busy_timeout,
        # raised by transactions that had not read yet).
        connection = context.connection
        if (
            connection is not None
            and connection.info.get(_SQLITE_HAS_READ, False)
            and sqlite_error_code(context.original_exception) == _SQLITE_BUSY
        ):
            return ConflictError("a concurrent transaction wrote first; retry")
        return None
