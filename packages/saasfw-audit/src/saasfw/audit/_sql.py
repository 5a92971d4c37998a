"""SQL sink (SQLAlchemy Core) and schema migration (the outbox is ``_outbox.py``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from saasfw.audit._errors import AuditSinkError, MissingExtraError
from saasfw.audit._sink import AuditSink, EncodedRecord

if TYPE_CHECKING:
    import asyncio

    from sqlalchemy import Connection, Table
    from sqlalchemy.ext.asyncio import AsyncEngine


_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def async_url(url: str) -> str:
    """Map a plain PostgreSQL or SQLite URL to its async driver (asyncpg, aiosqlite)."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def upgrade_schema(connection: Connection, *, schema: str | None = None) -> None:
    """Create or upgrade the audit tables with the package's Alembic migrations.

    Runs on the caller's connection (use ``await conn.run_sync(upgrade_schema)`` with an
    async engine); the version table is ``saasfw_audit_alembic_version`` so it never clashes
    with the application's own migrations.
    """
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from saasfw.core import advisory_lock_key

    if connection.dialect.name == "postgresql":
        # Replicas starting together would race on CREATE TABLE (a unique violation in
        # pg_type); the lock, held until the caller's transaction ends, lets one migrate
        # while the others wait and then find the tables at head.
        key = advisory_lock_key(f"saasfw.audit.migrations:{schema or ''}")
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    cfg = Config()
    cfg.set_main_option("script_location", "saasfw.audit:migrations")
    cfg.attributes["connection"] = connection
    cfg.attributes["schema"] = schema
    command.upgrade(cfg, "head")


def record_row(record: Mapping[str, Any], line: bytes) -> dict[str, Any]:
    """The events-table row of a record."""
    actor = record.get("actor") or {}
    resource = record.get("resource") or {}
    return {
        "id": record["id"],
        "producer": record["producer"],
        "seq": record["seq"],
        "ts": datetime.strptime(record["ts"], _TS_FORMAT).replace(tzinfo=UTC),
        "type": record["type"],
        "action": record["action"],
        "outcome": record["outcome"],
        "actor_id": actor.get("id"),
        "actor_kind": actor.get("kind"),
        "tenant": actor.get("tenant"),
        "address": actor.get("address"),
        "resource_type": resource.get("type"),
        "resource_id": resource.get("id"),
        "correlation_id": record.get("correlation_id"),
        "trace_id": record.get("trace_id"),
        "details": json.dumps(record.get("details") or {}, sort_keys=True, ensure_ascii=True),
        "mac": record.get("mac"),
        "record": line.rstrip(b"\n").decode("ascii"),
    }


def _insert_ignoring_duplicates(dialect: str, table: Table) -> Any:
    """An INSERT that skips rows already stored (a retried batch is not an error).

    Only the same event (its id) is skipped: another record claiming a producer's stored
    sequence number is an error, never silently dropped.
    """
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=["id"])
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["id"])
    from sqlalchemy import insert

    return insert(table)


class SqlSink(AuditSink):
    """Stores records in the ``audit_events`` table through its own async engine.

    The sink runs its own event loop inside its delivery thread, so it never shares
    connections with the application's loop. Retried batches are inserted idempotently.

    Args:
        url: a SQLAlchemy URL; ``postgresql://`` and ``sqlite://`` use asyncpg and aiosqlite.
        schema: the schema of the tables (PostgreSQL).
        migrate: run the package's Alembic migration on open.
    """

    name = "sql"
    idempotent = True  # a record stored again is ignored (primary key: the event id)

    def __init__(self, url: str, *, schema: str | None = None, migrate: bool = True) -> None:
        self.url = async_url(url)
        self.schema = schema
        self.migrate = migrate
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine: AsyncEngine | None = None
        self._executor: ThreadPoolExecutor | None = None
        _, self._events, _ = _build(schema)

    def open(self) -> None:
        from sqlalchemy.ext.asyncio import create_async_engine

        # One private thread runs the private loop, whichever thread calls the sink.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="saasfw-audit-sql")
        try:
            engine = create_async_engine(self.url, pool_pre_ping=True)
        except ImportError as exc:
            extra = {"asyncpg": "postgres", "aiosqlite": "sqlite"}.get(exc.name or "", "")
            raise MissingExtraError(extra or "postgres", exc.name or "the database driver") from exc
        import asyncio

        self._loop = asyncio.new_event_loop()
        self._engine = engine
        if self.migrate:
            self._run(self._migrate)

    def _run(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        loop = self._loop
        if loop is None:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.audit: loop is unset")
        if self._executor is None:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.audit: self._executor is unset")
        return self._executor.submit(lambda: loop.run_until_complete(factory())).result()

    async def _migrate(self) -> None:
        if self._engine is None:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.audit: self._engine is unset")
        async with self._engine.begin() as conn:
            await conn.run_sync(lambda c: upgrade_schema(c, schema=self.schema))

    def last_link(self, producer: str) -> tuple[int, str] | None:
        """The (sequence, mac) of the producer's last stored row, for chain resumption."""
        if self._engine is None:
            raise AuditSinkError("the SQL sink is not open", where="sql")
        try:
            row = self._run(lambda: self._last_link(producer))
        except Exception as exc:
            raise AuditSinkError(
                f"cannot read the chain head: {type(exc).__name__}", where="sql"
            ) from exc
        return None if row is None else (int(row[0]), str(row[1] or ""))

    async def _last_link(self, producer: str) -> Any:
        from sqlalchemy import select

        if self._engine is None:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.audit: self._engine is unset")
        t = self._events
        query = select(t.c.seq, t.c.mac).where(t.c.producer == producer).order_by(t.c.seq.desc())
        async with self._engine.connect() as conn:
            return (await conn.execute(query.limit(1))).first()

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        if self._engine is None:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.audit: self._engine is unset")
        stmt = _insert_ignoring_duplicates(self._engine.dialect.name, self._events)
        async with self._engine.begin() as conn:
            await conn.execute(stmt, rows)

    def write(self, batch: Sequence[EncodedRecord]) -> None:
        if self._engine is None:
            raise AuditSinkError("the SQL sink is not open", where="sql")
        rows = [record_row(r.record, r.line) for r in batch]
        try:
            self._run(lambda: self._write(rows))
        except Exception as exc:
            raise AuditSinkError(f"insert failed: {type(exc).__name__}", where="sql") from exc

    def close(self) -> None:
        if self._engine is not None:
            self._run(self._engine.dispose)
            self._engine = None
        if self._loop is not None:
            if self._executor is None:  # an internal invariant, not an input check
                raise RuntimeError("saasfw.audit: self._executor is unset")
            self._executor.submit(self._loop.close).result()
            self._executor.shutdown()
            self._loop = None

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url

        return f"SqlSink(url={make_url(self.url).render_as_string(hide_password=True)!r})"


def _build(schema: str | None) -> Any:
    from saasfw.audit._tables import build_tables

    return build_tables(schema)
