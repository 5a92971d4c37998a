"""``SqlSubjectKeyStore``: subject data keys shared by every instance, in the service database.

One row per data subject in ``saasfw_audit_subject_keys``, keyed by a keyed hash of the
subject (never the subject itself), holding the subject's data key wrapped by a
key-encryption key (:class:`~saasfw.audit.KeyWrapper`). Erasing a subject turns its row
into a tombstone: the wrapped key is deleted and the row stays, so no instance can ever mint
a new key for the subject, whatever events are still on their way.

Consistency across instances without a cache to invalidate: decryption reads the row on
every call (an erased key is refused at once, on every instance); encryption re-reads the
rows of a batch's subjects once per batch (``ensure``), and an encryption that still used
a key erased a moment before makes a ciphertext nobody can ever read, never a new key.
Unwrapped keys are kept in memory for ``key_ttl`` seconds only, to spare the KMS.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from saasfw.audit._crypto import new_subject_kid
from saasfw.audit._errors import (
    AuditCryptoError,
    AuditError,
    KeyShreddedError,
)
from saasfw.audit._kms import KeyWrapper
from saasfw.audit._private_loop import PrivateEngine, dispose_all
from saasfw.audit._sql import async_url

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from sqlalchemy import MetaData, Table
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["SUBJECT_KEYS_TABLE", "SqlSubjectKeyStore", "subject_keys_table"]

SUBJECT_KEYS_TABLE = "saasfw_audit_subject_keys"
_REF_KEY_ROW = "~ref-key"  # never a subject's reference (those are 64 hex digits)
_REF_KEY_CONTEXT = b"saasfw.audit.subject-ref-key"
_WHERE = "audit.encryption.subject_keys"
_CACHE_LIMIT = 100_000

# A row as read: (kid, kek id, wrapped key); the wrapped key is None once erased.
_Row = tuple[str | None, str | None, bytes | None]


def subject_keys_table(
    metadata: MetaData | None = None, *, schema: str | None = None, name: str = SUBJECT_KEYS_TABLE
) -> Table:
    """The key table; give the service's own ``MetaData`` to create it with its migrations."""
    from sqlalchemy import (
        Column,
        Float,
        LargeBinary,
        MetaData,
        PrimaryKeyConstraint,
        String,
        Table,
        UniqueConstraint,
    )

    return Table(
        name,
        metadata if metadata is not None else MetaData(),
        Column("subject_ref", String(64), nullable=False),
        Column("kid", String(40), nullable=True),
        Column("kek_id", String(64), nullable=True),
        Column("wrapped", LargeBinary(), nullable=True),
        Column("created_at", Float(), nullable=False),
        Column("erased_at", Float(), nullable=True),
        PrimaryKeyConstraint("subject_ref", name=f"pk_{name}"),
        UniqueConstraint("kid", name=f"uq_{name}_kid"),
        schema=schema,
    )


def _aesgcm(key: bytes) -> AESGCM:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


class SqlSubjectKeyStore:
    """Per-subject data keys in a SQL table every instance shares (PostgreSQL or SQLite).

    Implements the ``SubjectKeys`` port of :class:`~saasfw.audit.FieldCipher`. Every method
    is synchronous (the logger's pipeline thread calls them); the store runs its own async
    engine on a private thread, like :class:`~saasfw.audit.SqlSink`, and connects on first
    use.

    Args:
        url: the database (``postgresql://`` and ``sqlite://`` use asyncpg and aiosqlite).
        wrapper: wraps and unwraps the data keys (the KEK; see :class:`LocalKeyWrapper`).
        schema: the schema of the table (PostgreSQL).
        migrate: create the table when missing (under an advisory lock on PostgreSQL).
        max_staleness: seconds a subject's row, read for encryption, is trusted before it
            is read again (encryption through the logger or the outbox re-reads it anyway).
        key_ttl: seconds an unwrapped key stays in memory.
    """

    def __init__(
        self,
        url: str,
        wrapper: KeyWrapper,
        *,
        schema: str | None = None,
        migrate: bool = True,
        max_staleness: float = 1.0,
        key_ttl: float = 60.0,
    ) -> None:
        self.url = async_url(url)
        self.schema = schema
        self.migrate = migrate
        self.max_staleness = max_staleness
        self.key_ttl = key_ttl
        self._wrapper = wrapper
        self._table = subject_keys_table(schema=schema)
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._subjects: dict[str, tuple[str | None, AESGCM | None, float]] = {}
        self._keys: dict[str, tuple[AESGCM, float]] = {}
        self._ref_key: bytes | None = None
        # The open runtime, in a list the finalizer shares without keeping the store alive.
        self._runtime: list[PrivateEngine] = []
        self._migrated = False
        weakref.finalize(self, dispose_all, self._runtime)

    # -- the port ------------------------------------------------------------------------

    def ensure(self, subjects: Iterable[str]) -> None:
        """Read the rows of ``subjects`` (one query), creating keys for subjects with none.

        First use racing on several instances converges on one key: each inserts its own
        with ``ON CONFLICT DO NOTHING`` and all read back the row that won. An erased
        subject keeps its tombstone and gets no key.
        """
        refs = {self._ref(s): s for s in set(subjects)}
        if not refs:
            return
        rows = self._call(lambda: self._select(list(refs)))
        minted: dict[str, bytes] = {}
        missing = [ref for ref in refs if ref not in rows]
        if missing:
            fresh = [self._mint(ref, minted) for ref in missing]
            rows.update(self._call(lambda: self._insert(fresh, missing)))
        now = time.monotonic()
        for ref, subject in refs.items():
            row = rows.get(ref)
            if row is None:  # the insert neither stored ours nor found theirs
                raise AuditCryptoError("a subject key row could not be read back", where=_WHERE)
            self._remember(subject, row, minted, now)

    def cipher_for_subject(self, subject: str) -> tuple[str, AESGCM]:
        """The subject's key id and cipher, creating the key on first use.

        Raises:
            KeyShreddedError: the subject was erased; it can never get a key again.
        """
        entry = self._subjects.get(subject)
        if entry is None or time.monotonic() - entry[2] > self.max_staleness:
            self.ensure([subject])
            entry = self._subjects.get(subject)
        if entry is None or entry[0] is None or entry[1] is None:
            raise KeyShreddedError(
                "the data subject was erased: its fields are never encrypted again", where=_WHERE
            )
        return entry[0], entry[1]

    def cipher_for_kid(self, kid: str) -> AESGCM:
        """The cipher of data key ``kid``, after reading its row (erasure holds at once)."""
        row = self._call(lambda: self._select_kid(kid))
        if row is None:
            raise AuditCryptoError(f"unknown data key {kid}", where=_WHERE)
        kek_id, wrapped = row
        if wrapped is None or kek_id is None:
            with self._lock:
                self._keys.pop(kid, None)
            raise KeyShreddedError(f"data key {kid} was erased (crypto-shredded)")
        return self._cipher(kid, kek_id, wrapped, {}, time.monotonic())

    def erase(self, subject: str) -> str | None:
        """Erase the subject's data key for good, on every instance; return its key id.

        The row becomes a tombstone (no wrapped key), also for a subject that never had a
        key, so none can be created later. Erasing again is harmless. Returns None when the
        subject never had a key.
        """
        ref = self._ref(subject)
        kid: str | None = self._call(lambda: self._tombstone(ref))
        with self._lock:
            self._subjects.pop(subject, None)
            if kid is not None:
                self._keys.pop(kid, None)
        return kid

    def rewrap(self, *, page: int = 500) -> int:
        """Re-wrap every live key still wrapped by an older KEK with the active one.

        After a KEK rotation, run it once (any instance); then the old KEK can be destroyed,
        and with it every copy of the wrapped keys in old backups. A key erased meanwhile
        stays erased (each row is replaced only if it still holds what was read). Returns
        the number of keys re-wrapped.
        """
        active, _ = self._wrapper.wrap(os.urandom(32), context=b"saasfw.audit.probe")
        done, after = 0, ""
        while True:
            rows = self._call(functools.partial(self._select_page, after, page))
            if not rows:
                return done
            after = rows[-1][0]
            for ref, kid, kek_id, wrapped in rows:
                if kek_id == active:
                    continue
                context = _REF_KEY_CONTEXT if ref == _REF_KEY_ROW else str(kid).encode()
                key = self._wrapper.unwrap(kek_id, wrapped, context=context)
                new_kek, new_wrapped = self._wrapper.wrap(key, context=context)
                done += self._call(
                    functools.partial(
                        self._replace_wrapped, ref, kek_id, wrapped, new_kek, new_wrapped
                    )
                )

    def close(self) -> None:
        """Dispose of the engine and stop the private thread (the store reopens on use)."""
        with self._open_lock:
            dispose_all(self._runtime)

    # -- keys in memory ----------------------------------------------------------------

    def _ref(self, subject: str) -> str:
        if not isinstance(subject, str) or not subject:
            raise AuditCryptoError("a data subject is a non-empty string", where=_WHERE)
        key = self._ref_key
        if key is None:
            key = self._ref_key = self._call(self._load_ref_key)
        return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()

    def _mint(self, ref: str, minted: dict[str, bytes]) -> dict[str, Any]:
        kid = new_subject_kid()
        key = os.urandom(32)
        kek_id, wrapped = self._wrapper.wrap(key, context=kid.encode())
        minted[kid] = key
        return {
            "subject_ref": ref,
            "kid": kid,
            "kek_id": kek_id,
            "wrapped": wrapped,
            "created_at": time.time(),
            "erased_at": None,
        }

    def _cipher(
        self, kid: str, kek_id: str, wrapped: bytes, minted: dict[str, bytes], now: float
    ) -> AESGCM:
        cached = self._keys.get(kid)
        if cached is not None and now - cached[1] <= self.key_ttl:
            return cached[0]
        key = minted.get(kid)
        if key is None:
            key = self._wrapper.unwrap(kek_id, wrapped, context=kid.encode())
        cipher = _aesgcm(key)
        with self._lock:
            if len(self._keys) >= _CACHE_LIMIT:
                self._keys.clear()
            self._keys[kid] = (cipher, now)
        return cipher

    def _remember(self, subject: str, row: _Row, minted: dict[str, bytes], now: float) -> None:
        kid, kek_id, wrapped = row
        if kid is None or kek_id is None or wrapped is None:
            entry: tuple[str | None, AESGCM | None, float] = (None, None, now)
            if kid is not None:
                with self._lock:
                    self._keys.pop(kid, None)
        else:
            entry = (kid, self._cipher(kid, kek_id, wrapped, minted, now), now)
        with self._lock:
            if len(self._subjects) >= _CACHE_LIMIT:
                self._subjects.clear()
            self._subjects[subject] = entry

    # -- the database ------------------------------------------------------------------

    def _call(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        """Run a query on the private loop; database failures become AuditCryptoError."""
        try:
            self._open()
            self._migrate()
            return self._submit(factory)
        except AuditError:
            raise
        except Exception as exc:
            raise AuditCryptoError(
                f"the subject key store failed: {type(exc).__name__}", where=_WHERE
            ) from exc

    def _submit(self, factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        if not self._runtime:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.audit: the subject key store is not open")
        return self._runtime[0].run(factory)

    def _open(self) -> None:
        if self._runtime:
            return
        with self._open_lock:
            if self._runtime:
                return
            runtime = PrivateEngine(self.url, where=_WHERE, thread_name="saasfw-audit-keys")
            self._runtime.append(runtime)
            self._migrated = not self.migrate

    def _migrate(self) -> None:
        """Create the table once (a failure is retried on the next use)."""
        if self._migrated:
            return
        with self._open_lock:
            if not self._migrated:
                engine = self._runtime[0].engine
                self._runtime[0].run(lambda: self._create_table(engine))
                self._migrated = True

    def _begin(self) -> Any:
        if not self._runtime:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.audit: the subject key store is not open")
        return self._runtime[0].engine.begin()

    async def _create_table(self, engine: AsyncEngine) -> None:
        from saasfw.core import create_missing_tables

        lock = f"saasfw.audit.subject_keys:{self.schema or ''}"
        await create_missing_tables(engine, lock, self._table)

    def _insert_stmt(self, conn: AsyncConnection) -> Any:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(self._table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(self._table)

    async def _load_ref_key(self) -> bytes:
        """The key of the subjects' keyed hashes: one per table, made by the first user."""
        t = self._table
        from sqlalchemy import select

        query = select(t.c.kek_id, t.c.wrapped).where(t.c.subject_ref == _REF_KEY_ROW)
        async with self._begin() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                kek_id, wrapped = self._wrapper.wrap(os.urandom(32), context=_REF_KEY_CONTEXT)
                values = {
                    "subject_ref": _REF_KEY_ROW,
                    "kid": None,
                    "kek_id": kek_id,
                    "wrapped": wrapped,
                    "created_at": time.time(),
                }
                stmt = self._insert_stmt(conn).values(**values).on_conflict_do_nothing()
                await conn.execute(stmt)
                row = (await conn.execute(query)).one()
        if row[0] is None or row[1] is None:
            raise AuditCryptoError("the subject reference key row is damaged", where=_WHERE)
        return self._wrapper.unwrap(row[0], row[1], context=_REF_KEY_CONTEXT)

    async def _select(self, refs: Sequence[str]) -> dict[str, _Row]:
        from sqlalchemy import select

        t = self._table
        query = select(t.c.subject_ref, t.c.kid, t.c.kek_id, t.c.wrapped).where(
            t.c.subject_ref.in_(refs)
        )
        async with self._begin() as conn:
            rows = (await conn.execute(query)).all()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    async def _insert(self, fresh: list[dict[str, Any]], refs: Sequence[str]) -> dict[str, _Row]:
        async with self._begin() as conn:
            stmt = self._insert_stmt(conn).on_conflict_do_nothing(index_elements=["subject_ref"])
            await conn.execute(stmt, fresh)
        return await self._select(refs)

    async def _select_kid(self, kid: str) -> tuple[str | None, bytes | None] | None:
        from sqlalchemy import select

        t = self._table
        async with self._begin() as conn:
            row = (
                await conn.execute(select(t.c.kek_id, t.c.wrapped).where(t.c.kid == kid))
            ).first()
        return None if row is None else (row[0], row[1])

    async def _select_page(self, after: str, page: int) -> list[tuple[str, Any, str, bytes]]:
        from sqlalchemy import select

        t = self._table
        query = (
            select(t.c.subject_ref, t.c.kid, t.c.kek_id, t.c.wrapped)
            .where(t.c.subject_ref > after, t.c.wrapped.is_not(None))
            .order_by(t.c.subject_ref)
            .limit(page)
        )
        async with self._begin() as conn:
            return [(r[0], r[1], r[2], r[3]) for r in (await conn.execute(query)).all()]

    async def _replace_wrapped(
        self, ref: str, kek_id: str, wrapped: bytes, new_kek: str, new_wrapped: bytes
    ) -> int:
        from sqlalchemy import update

        t = self._table
        stmt = (
            update(t)
            .where(t.c.subject_ref == ref, t.c.kek_id == kek_id, t.c.wrapped == wrapped)
            .values(kek_id=new_kek, wrapped=new_wrapped)
        )
        async with self._begin() as conn:
            result = await conn.execute(stmt)
        return int(getattr(result, "rowcount", 0) or 0)

    async def _tombstone(self, ref: str) -> str | None:
        from sqlalchemy import func

        t = self._table
        now = time.time()
        async with self._begin() as conn:
            ins = self._insert_stmt(conn).values(
                subject_ref=ref, kid=None, kek_id=None, wrapped=None, created_at=now, erased_at=now
            )
            stmt = ins.on_conflict_do_update(
                index_elements=["subject_ref"],
                set_={
                    "kek_id": None,
                    "wrapped": None,
                    "erased_at": func.coalesce(t.c.erased_at, ins.excluded.erased_at),
                },
            ).returning(t.c.kid)
            kid: str | None = (await conn.execute(stmt)).scalar_one()
        return kid

    def __repr__(self) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.url).render_as_string(hide_password=True)
        return f"SqlSubjectKeyStore(url={url!r}, schema={self.schema!r})"
