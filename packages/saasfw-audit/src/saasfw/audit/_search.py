"""Search and analytics over the SQL sink, confined to one tenant, with keyset pagination."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from saasfw.audit._crypto import ENVELOPE_PREFIX, FieldCipher
from saasfw.audit._errors import AuditCryptoError, AuditError, KeyShreddedError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

MAX_PAGE_SIZE = 200
ERASED = "[erased]"


class InvalidCursorError(AuditError):
    """The pagination cursor is malformed (it is opaque: pass back what a page returned)."""


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters; every one is optional and they combine with AND."""

    since: datetime | None = None
    until: datetime | None = None
    type: str | None = None
    actor_id: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    correlation_id: str | None = None
    outcome: str | None = None

    def as_details(self) -> dict[str, str]:
        return {
            k: v.isoformat() if isinstance(v, datetime) else v
            for k, v in (
                ("since", self.since),
                ("until", self.until),
                ("type", self.type),
                ("actor_id", self.actor_id),
                ("resource_type", self.resource_type),
                ("resource_id", self.resource_id),
                ("correlation_id", self.correlation_id),
                ("outcome", self.outcome),
            )
            if v is not None
        }


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of records, newest first; ``next_cursor`` is None on the last page."""

    items: list[dict[str, Any]]
    next_cursor: str | None
    limit: int = field(default=MAX_PAGE_SIZE)


def _encode_cursor(ts: datetime, event_id: str) -> str:
    raw = json.dumps([ts.astimezone(UTC).isoformat(), event_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts_text, event_id = json.loads(raw)
        return datetime.fromisoformat(ts_text), str(event_id)
    except (ValueError, TypeError) as exc:
        raise InvalidCursorError("the cursor is not one this API returned") from exc


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class AuditSearch:
    """Queries the ``audit_events`` table through the application's async engine.

    Every query is confined to one tenant (the caller's, from the verified principal).
    Encrypted fields stay envelopes unless ``decrypt=True`` and a cipher is configured; the
    router checks the caller's permission before asking for that.
    """

    def __init__(
        self, engine: AsyncEngine, *, schema: str | None = None, cipher: FieldCipher | None = None
    ) -> None:
        from saasfw.audit._tables import build_tables

        self.engine = engine
        self.cipher = cipher
        _, self._t, _ = build_tables(schema)

    async def search(
        self,
        *,
        tenant: str,
        query: AuditQuery | None = None,
        cursor: str | None = None,
        limit: int = 50,
        decrypt: bool = False,
    ) -> AuditPage:
        """One page of the tenant's events matching ``query``, newest first.

        ``limit`` is clamped to 1..200. Pass ``next_cursor`` back to get the next page.
        """
        from sqlalchemy import and_, or_, select

        q = query or AuditQuery()
        t = self._t
        limit = max(1, min(int(limit), MAX_PAGE_SIZE))
        conds = [t.c.tenant == tenant]
        if q.since is not None:
            conds.append(t.c.ts >= _aware(q.since))
        if q.until is not None:
            conds.append(t.c.ts < _aware(q.until))
        for col, value in (
            (t.c.type, q.type),
            (t.c.actor_id, q.actor_id),
            (t.c.resource_type, q.resource_type),
            (t.c.resource_id, q.resource_id),
            (t.c.correlation_id, q.correlation_id),
            (t.c.outcome, q.outcome),
        ):
            if value is not None:
                conds.append(col == value)
        if cursor is not None:
            c_ts, c_id = _decode_cursor(cursor)
            conds.append(or_(t.c.ts < c_ts, and_(t.c.ts == c_ts, t.c.id < c_id)))
        stmt = (
            select(t.c.ts, t.c.id, t.c.record)
            .where(*conds)
            .order_by(t.c.ts.desc(), t.c.id.desc())
            .limit(limit + 1)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        items = [json.loads(r.record) for r in rows]
        if decrypt and self.cipher is not None:
            items = [self._decrypted(rec) for rec in items]
        next_cursor = None
        if more and rows:
            last = rows[-1]
            next_cursor = _encode_cursor(_aware(last.ts), last.id)
        return AuditPage(items, next_cursor, limit)

    async def export(
        self, *, tenant: str, query: AuditQuery, decrypt: bool = True
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record of the tenant matching ``query``, page by page (newest first).

        For a data subject's access or portability request, query by the subject as actor
        (``actor_id``) and as resource (``resource_type``/``resource_id``).
        """
        cursor: str | None = None
        while True:
            page = await self.search(
                tenant=tenant, query=query, cursor=cursor, limit=MAX_PAGE_SIZE, decrypt=decrypt
            )
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _decrypted(self, rec: dict[str, Any]) -> dict[str, Any]:
        if self.cipher is None:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.audit: self.cipher is unset")
        details: dict[str, Any] = {}
        for name, value in (rec.get("details") or {}).items():
            if isinstance(value, str) and value.startswith(ENVELOPE_PREFIX):
                try:
                    details[name] = self.cipher.decrypt(value, event_id=rec["id"], field=name)
                except KeyShreddedError:
                    details[name] = ERASED
                except AuditCryptoError:
                    details[name] = "[undecryptable]"
            else:
                details[name] = value
        return {**rec, "details": details}

    async def counts(
        self,
        *,
        tenant: str,
        since: datetime,
        until: datetime,
        bucket: Literal["hour", "day"] = "day",
    ) -> list[dict[str, Any]]:
        """Event counts per time bucket, type and outcome for the tenant, oldest first."""
        from sqlalchemy import func, select

        t = self._t
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            bucket_col: Any = func.date_trunc(bucket, t.c.ts)
        else:
            fmt = "%Y-%m-%dT%H:00:00" if bucket == "hour" else "%Y-%m-%dT00:00:00"
            bucket_col = func.strftime(fmt, t.c.ts)
        b = bucket_col.label("bucket")
        stmt = (
            select(b, t.c.type, t.c.outcome, func.count().label("n"))
            .where(t.c.tenant == tenant, t.c.ts >= _aware(since), t.c.ts < _aware(until))
            .group_by(b, t.c.type, t.c.outcome)
            .order_by(b, t.c.type, t.c.outcome)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        out = []
        for r in rows:
            start = r.bucket
            if isinstance(start, str):
                start = datetime.fromisoformat(start).replace(tzinfo=UTC)
            out.append(
                {
                    "bucket": _aware(start).isoformat(),
                    "type": r.type,
                    "outcome": r.outcome,
                    "count": int(r.n),
                }
            )
        return out
