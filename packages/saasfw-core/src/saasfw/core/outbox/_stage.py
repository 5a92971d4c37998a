"""Staging: write a message into the outbox inside the caller's own transaction.

If the caller's transaction rolls back, the message goes with it; if it commits, the
message is there for a relay. That is the whole point: a change and the message that
announces it are stored together or not at all.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from saasfw.core.outbox._tables import MAX_KEY_LENGTH, OutboxTables

__all__ = ["OutboxStats", "StagedMessage", "outbox_stats", "stage_message", "upsert"]


@dataclass(frozen=True, slots=True)
class StagedMessage:
    """What staging assigned: the message id and the key's next sequence number."""

    message_id: str
    ordering_key: str
    sequence: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """How much waits in the outbox, and how long the oldest message has waited."""

    depth: int
    oldest_age: float | None


def upsert(dialect: str, table: Any) -> Any:
    """The dialect's ``INSERT ... ON CONFLICT`` construct (PostgreSQL and SQLite)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise NotImplementedError(f"the saasfw outbox supports PostgreSQL and SQLite, not {dialect!r}")


async def _connection(target: AsyncConnection | AsyncSession) -> AsyncConnection:
    return await target.connection() if isinstance(target, AsyncSession) else target


async def stage_message(
    tables: OutboxTables,
    target: AsyncConnection | AsyncSession,
    *,
    key: str,
    type: str,
    payload: str,
    headers: Mapping[str, str] | None = None,
    message_id: str | None = None,
) -> StagedMessage:
    """Insert one message for ``key`` inside ``target``'s open transaction.

    The key's counter row is upserted first: it assigns the sequence number and holds the
    row lock until the caller commits, so concurrent stagings for one key get numbers in
    commit order (the relay delivers in that order).
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"an ordering key is 1 to {MAX_KEY_LENGTH} characters, got {len(key)}")
    conn = await _connection(target)
    now = time.time()
    keys = tables.keys
    statement = upsert(conn.dialect.name, keys).values(
        ordering_key=key, last_sequence=1, updated_at=now
    )
    statement = statement.on_conflict_do_update(
        index_elements=[keys.c.ordering_key],
        set_={"last_sequence": keys.c.last_sequence + 1, "updated_at": now},
    ).returning(keys.c.last_sequence)
    sequence = int((await conn.execute(statement)).scalar_one())
    message_id = message_id or uuid.uuid4().hex
    await conn.execute(
        tables.messages.insert().values(
            message_id=message_id,
            ordering_key=key,
            sequence=sequence,
            type=type,
            payload=payload,
            headers=json.dumps(dict(headers or {}), separators=(",", ":")),
            created_at=now,
            attempts=0,
        )
    )
    return StagedMessage(message_id=message_id, ordering_key=key, sequence=sequence)


async def outbox_stats(tables: OutboxTables, engine: AsyncEngine) -> OutboxStats:
    """The outbox's depth and the age of its oldest message (for metrics and health)."""
    messages = tables.messages
    async with engine.connect() as conn:
        row = (await conn.execute(select(func.count(), func.min(messages.c.created_at)))).one()
    depth, oldest = int(row[0]), row[1]
    return OutboxStats(depth=depth, oldest_age=None if oldest is None else time.time() - oldest)
