"""The inbox: one row per processed event, written in the handler's own transaction.

The row and the handler's side effects commit together, so an event the broker delivers
again (at-least-once delivery, a relay that crashed before deleting) finds its row and is
acknowledged without running the handler a second time. Two replicas receiving the same
event at once serialise on the primary key: the second waits for the first to commit,
then sees the conflict.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import BigInteger, Column, Float, Index, MetaData, String, Table, delete
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from saasfw.messaging._envelope import CloudEvent

__all__ = ["inbox_table", "prune_inbox", "record_once"]


def _insert(dialect: str, table: Table) -> Any:
    """The dialect's ``INSERT ... ON CONFLICT`` construct (PostgreSQL and SQLite)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert

        return insert(table)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise NotImplementedError(f"the saasfw inbox supports PostgreSQL and SQLite, not {dialect!r}")


def inbox_table(
    name: str = "saasfw_messaging_inbox",
    *,
    metadata: MetaData | None = None,
    schema: str | None = None,
) -> Table:
    """Declare the inbox table; pass the service's ``MetaData`` so its migrations create it."""
    return Table(
        name,
        metadata if metadata is not None else MetaData(),
        Column("message_id", String(64), primary_key=True),
        Column("source", String(500), nullable=False),
        Column("type", String(200), nullable=False),
        Column("partitionkey", String(200), nullable=True),
        Column("sequence", BigInteger, nullable=True),
        Column("processed_at", Float, nullable=False),
        Index(f"ix_{name}_processed_at", "processed_at"),
        schema=schema,
    )


async def record_once(session: AsyncSession, inbox: Table, event: CloudEvent) -> bool:
    """Insert the event's inbox row; False when it was already processed."""
    conn = await session.connection()
    statement = (
        _insert(conn.dialect.name, inbox)
        .values(
            message_id=event.id,
            source=event.source,
            type=event.type,
            partitionkey=event.partitionkey,
            sequence=event.sequence,
            processed_at=time.time(),
        )
        .on_conflict_do_nothing(index_elements=[inbox.c.message_id])
        .returning(inbox.c.message_id)
    )
    return (await conn.execute(statement)).first() is not None


async def prune_inbox(engine: AsyncEngine, inbox: Table, *, older_than: float) -> int:
    """Delete inbox rows processed more than ``older_than`` seconds ago; return how many.

    An event redelivered after its row is gone runs again, so keep rows longer than any
    redelivery can take: the relay's longest outage, the broker's retention, and the time
    within which someone may replay dead letters (days, not minutes).
    """
    if older_than <= 0:
        raise ValueError(f"older_than must be positive seconds, got {older_than}")
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(inbox).where(inbox.c.processed_at < time.time() - older_than)
        )
    return int(result.rowcount)
