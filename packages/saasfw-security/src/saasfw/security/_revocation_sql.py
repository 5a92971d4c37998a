"""SQL revocation store: durable, shared revocation state in the service's own database.

Writes go to four tables (revoked token ids, revoked families, per-subject not-before, used
refresh-token ids), each row carrying the expiry of the token it concerns. On PostgreSQL
with asyncpg the store also LISTENs for the NOTIFY each write sends inside its own
transaction (so the row is committed before any instance hears of it) and answers checks
from an in-process copy of the live revocations; whenever that copy cannot be trusted the
check reads the database, and when the database does not answer either the check refuses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from saasfw.security._errors import ConfigurationError, MissingExtraError, SecurityUnavailableError
from saasfw.security._revocation_cache import (
    Digests,
    RevocationCache,
    digest,
    format_change,
    parse_change,
)
from saasfw.security._revocation_listen import (
    ListenedStore,
    RevocationListener,
    pg_subscription,
)

__all__ = ["SqlRevocationStore"]

_log = logging.getLogger("saasfw.security.revocation")


class SqlRevocationStore(ListenedStore):
    """Revocation state in SQL (PostgreSQL or SQLite), cached locally on PostgreSQL.

    Call :meth:`start` (or use ``async with``) so PostgreSQL instances keep their cache
    current through LISTEN/NOTIFY; without it, or on SQLite, every check reads the database
    (one round trip, always exact). The listener holds one connection of the engine's pool.

    Args:
        engine: a SQLAlchemy ``AsyncEngine`` (asyncpg or aiosqlite; any PostgreSQL driver
            works without the cache).
        schema / table_prefix: where the four tables live; create them with
            :meth:`create_tables` or your migrations (:attr:`metadata` holds them).
        channel: the NOTIFY channel (default: derived from prefix and schema, so stores in
            different schemas of one database never hear each other).
        listen: set False to never cache (every check reads the database).
        application_name: the listening session's name in ``pg_stat_activity``.
        timeout: seconds a database check may take before the check refuses.
        write_timeout: seconds a write (revoke, mark used) may take before it fails.
        heartbeat: seconds between liveness probes of the listening connection.
        purge_every: expired rows are deleted once per this many writes.
    """

    def __init__(
        self,
        engine: Any,
        *,
        schema: str | None = None,
        table_prefix: str = "saasfw_revocation_",
        channel: str | None = None,
        listen: bool = True,
        application_name: str = "saasfw-revocation-listener",
        timeout: float = 2.0,
        write_timeout: float = 10.0,
        heartbeat: float = 5.0,
        purge_every: int = 256,
    ) -> None:
        try:
            import sqlalchemy as sa
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise MissingExtraError("SqlRevocationStore", "sql") from None
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise ConfigurationError(
                f"SqlRevocationStore supports PostgreSQL and SQLite, not {dialect!r}; "
                "use RedisRevocationStore or implement RevocationStore for this database"
            )
        self._engine = engine
        self._dialect = dialect
        self.timeout = timeout
        self.write_timeout = write_timeout
        self.purge_every = purge_every
        self.metadata = sa.MetaData(schema=schema)

        def table(name: str, *extra: Any) -> sa.Table:
            return sa.Table(
                f"{table_prefix}{name}",
                self.metadata,
                sa.Column("key", sa.String(40), primary_key=True),
                *extra,
                sa.Column("expires_at", sa.Double, nullable=False, index=True),
            )

        self.tokens = table("tokens")
        self.families = table("families")
        self.not_before = table("not_before", sa.Column("not_before", sa.Double, nullable=False))
        self.used = table("used")
        self.channel = channel or f"{table_prefix}{schema or 'public'}"
        if len(self.channel.encode()) > 63:
            raise ConfigurationError(
                "the revocation NOTIFY channel name is longer than PostgreSQL's 63 bytes; "
                "pass a shorter channel="
            )
        self._cache = RevocationCache()
        # Raw value -> digest, so a token seen on every request is hashed once, not per check.
        self._key = Digests()
        self._listener: RevocationListener | None = None
        if listen and dialect == "postgresql" and engine.dialect.driver == "asyncpg":
            self._listener = RevocationListener(
                pg_subscription(engine, self.channel, application_name),
                on_change=self._on_change,
                reload=self._reload,
                notify=self._notify,
                heartbeat=heartbeat,
                timeout=max(timeout, 5.0),
            )
        self._writes = 0
        self.cache_checks = 0
        self.database_checks = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def create_tables(self) -> None:
        """Create the tables if missing (use migrations in production).

        Replicas starting together take turns on an advisory lock (PostgreSQL), so none
        fails on a ``CREATE TABLE`` race.
        """
        from saasfw.core import create_missing_tables

        tables = self.metadata.sorted_tables
        await create_missing_tables(
            self._engine, f"saasfw.security.revocation:{tables[0].fullname}", *tables
        )

    async def start(self) -> None:
        """Start listening (PostgreSQL on asyncpg); checks read the database until ready."""
        if self._listener is not None:
            self._listener.start()

    async def aclose(self) -> None:
        """Stop listening and give the listening connection up (the engine stays yours)."""
        if self._listener is not None:
            await self._listener.aclose()

    async def __aenter__(self) -> SqlRevocationStore:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # -- the cache -------------------------------------------------------------------------

    def _on_change(self, payload: str) -> None:
        change = parse_change(payload)
        if change is None:
            _log.warning("ignored a malformed revocation notification on %s", self.channel)
            return
        self._cache.apply(*change, now=time.time())

    async def _reload(self) -> None:
        import sqlalchemy as sa

        # Clearing may drop a change notified a moment ago; harmless, because a notification
        # is sent on commit, so its row is already visible to the queries below. Rows deleted
        # by hand (to lift a revocation) disappear from the copy here too.
        self._cache.clear()
        now = time.time()
        async with self._engine.connect() as conn:
            for kind, table in (("jti", self.tokens), ("fam", self.families)):
                rows = await conn.execute(
                    sa.select(table.c.key, table.c.expires_at).where(table.c.expires_at > now)
                )
                for key, expires_at in rows:
                    self._cache.apply(kind, key, expires_at, 0.0, now)
            nb = self.not_before
            rows = await conn.execute(
                sa.select(nb.c.key, nb.c.expires_at, nb.c.not_before).where(nb.c.expires_at > now)
            )
            for key, expires_at, not_before in rows:
                self._cache.apply("nbf", key, expires_at, not_before, now)

    async def _notify(self, payload: str) -> None:
        import sqlalchemy as sa

        async with self._engine.begin() as conn:
            await conn.execute(sa.select(sa.func.pg_notify(self.channel, payload)))

    # -- checks ----------------------------------------------------------------------------

    async def is_revoked(
        self, *, jti: str | None, family: str | None, subject: str, issued_at: float | None
    ) -> bool:
        jti_key = None if jti is None else self._key(jti)
        family_key = None if family is None else self._key(family)
        subject_key = self._key(subject)
        listener = self._listener
        if listener is not None and listener.trusted:
            self.cache_checks += 1
            return self._cache.is_revoked(jti_key, family_key, subject_key, issued_at, time.time())
        self.database_checks += 1
        return await self._read(jti_key, family_key, subject_key, issued_at)

    async def _read(
        self, jti_key: str | None, family_key: str | None, subject_key: str, issued_at: float | None
    ) -> bool:
        import sqlalchemy as sa

        now = time.time()

        def live(table: sa.Table, key: str | None, column: str = "expires_at") -> Any:
            if key is None:
                return sa.null()
            return (
                sa.select(table.c[column])
                .where(table.c.key == key, table.c.expires_at > now)
                .scalar_subquery()
            )

        query = sa.select(
            live(self.tokens, jti_key),
            live(self.families, family_key),
            live(self.not_before, subject_key, "not_before"),
        )
        try:
            async with asyncio.timeout(self.timeout), self._engine.connect() as conn:
                row = (await conn.execute(query)).one()
        except Exception as exc:
            raise self._unavailable("check", exc) from None
        if row[0] is not None or row[1] is not None:
            return True
        if row[2] is not None:
            return (issued_at if issued_at is not None else 0.0) < float(row[2])
        return False

    @staticmethod
    def _unavailable(what: str, exc: BaseException) -> SecurityUnavailableError:
        # The type only: driver messages can name hosts, users and statements.
        return SecurityUnavailableError(
            f"the revocation database is unreachable during a {what} ({type(exc).__name__}); "
            "requests that need it are refused until it answers"
        )

    # -- writes ----------------------------------------------------------------------------

    def _insert(self, table: Any) -> Any:
        from sqlalchemy.dialects import postgresql, sqlite

        return (postgresql if self._dialect == "postgresql" else sqlite).insert(table)

    async def _upsert(self, kind: str, key: str, expires_at: float, not_before: float) -> None:
        import sqlalchemy as sa

        table = {"jti": self.tokens, "fam": self.families, "nbf": self.not_before}[kind]
        values: dict[str, Any] = {"key": key, "expires_at": expires_at}
        if kind == "nbf":
            values["not_before"] = not_before
        stmt = self._insert(table).values(**values)
        # Values only move forward, so racing writers and a reload commute (see the cache).
        forward = {
            name: sa.case(
                (stmt.excluded[name] > table.c[name], stmt.excluded[name]), else_=table.c[name]
            )
            for name in values
            if name != "key"
        }
        stmt = stmt.on_conflict_do_update(index_elements=[table.c.key], set_=forward)
        try:
            async with asyncio.timeout(self.write_timeout), self._engine.begin() as conn:
                await conn.execute(stmt)
                if self._dialect == "postgresql":
                    # Same transaction: delivered on commit, never before the row is visible.
                    payload = format_change(kind, key, expires_at, not_before)
                    await conn.execute(sa.select(sa.func.pg_notify(self.channel, payload)))
        except Exception as exc:
            raise self._unavailable("revocation", exc) from None
        self._cache.apply(kind, key, expires_at, not_before, time.time())
        await self._maybe_purge()

    async def _maybe_purge(self) -> None:
        self._writes += 1
        if self._writes % self.purge_every:
            return
        now = time.time()
        try:
            async with asyncio.timeout(self.write_timeout), self._engine.begin() as conn:
                for table in (self.tokens, self.families, self.not_before, self.used):
                    await conn.execute(table.delete().where(table.c.expires_at <= now))
        except Exception as exc:
            # The write itself committed; expired rows wait for the next purge.
            _log.warning("revocation purge failed (%s); retried later", type(exc).__name__)

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        await self._upsert("jti", self._key(jti), expires_at, 0.0)

    async def revoke_family(self, family: str, expires_at: float) -> None:
        await self._upsert("fam", self._key(family), expires_at, 0.0)

    async def set_not_before(self, subject: str, not_before: float, ttl: float) -> None:
        await self._upsert("nbf", self._key(subject), time.time() + ttl, not_before)

    async def mark_used(self, jti: str, expires_at: float) -> bool:
        stmt = (
            self._insert(self.used)
            .values(key=digest(jti), expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=[self.used.c.key])
        )
        try:
            async with asyncio.timeout(self.write_timeout), self._engine.begin() as conn:
                result = await conn.execute(stmt)
        except Exception as exc:
            raise self._unavailable("refresh", exc) from None
        await self._maybe_purge()
        # Exactly one of several racing inserts creates the row; the others see rowcount 0.
        return bool(result.rowcount == 1)
