"""The dead-letter table: every event a consumer gave up on, with its reason, in the database.

The broker keeps its own copy (RabbitMQ ``<queue>.dead``, the NATS ``<stream>_dead``
stream), but an operator needs to list, read and replay them next to the data they
concern, so the consumer also records each one here, in the service's own database. A
replay stages the event again through the outbox, unchanged (its signature still holds)
and under its own ordering key, so it is delivered after what already waits for that key
and the inbox still applies it once. The row is marked replayed in the same transaction.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from saasfw.core.outbox import OutboxTables, stage_message
from saasfw.core.outbox._stage import upsert
from saasfw.messaging._envelope import CONTENT_TYPE, CloudEvent
from saasfw.messaging._errors import MessagingError

__all__ = [
    "REPLAY_HEADER",
    "DeadLetterRecord",
    "ReplayRefused",
    "dead_letter_table",
    "get_dead_letter",
    "list_dead_letters",
    "record_dead_letter",
    "replay_dead_letter",
]

REPLAY_HEADER = "saasfw-replay-to"
"""Outbox header naming the one consumer (RabbitMQ queue) a replayed event goes back to."""

_MAX_BODY = 1_000_000


def dead_letter_table(
    name: str = "saasfw_messaging_dead_letters",
    *,
    metadata: MetaData | None = None,
    schema: str | None = None,
) -> Table:
    """Declare the dead-letter table; pass the service's ``MetaData`` so migrations create it.

    One row per consumer and event id: an event dead-lettered again after a replay updates
    its row (status back to ``dead``) instead of adding one.
    """
    return Table(
        name,
        metadata if metadata is not None else MetaData(),
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("consumer", String(200), nullable=False),
        Column("message_id", String(64), nullable=False),
        Column("source", String(500), nullable=True),
        Column("type", String(200), nullable=True),
        Column("partitionkey", String(200), nullable=True),
        Column("sequence", BigInteger, nullable=True),
        Column("reason", String(50), nullable=False),
        Column("error", String(500), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("body", Text, nullable=False),
        Column("status", String(20), nullable=False),
        Column("dead_lettered_at", Float, nullable=False),
        Column("replayed_at", Float, nullable=True),
        Column("replays", Integer, nullable=False),
        UniqueConstraint("consumer", "message_id", name=f"uq_{name}_consumer_message"),
        Index(f"ix_{name}_status", "status", "dead_lettered_at"),
        schema=schema,
    )


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One row of the dead-letter table."""

    id: int
    consumer: str
    message_id: str
    source: str | None
    type: str | None
    partitionkey: str | None
    sequence: int | None
    reason: str
    error: str
    attempts: int
    body: str
    status: str
    dead_lettered_at: float
    replayed_at: float | None
    replays: int


async def record_dead_letter(
    conn: AsyncConnection,
    table: Table,
    *,
    consumer: str,
    body: bytes,
    event: CloudEvent | None,
    reason: str,
    error: str,
    attempts: int,
    key_by_body: bool = False,
) -> None:
    """Insert (or refresh) the row of a dead-lettered message in ``conn``'s transaction.

    ``event`` is the parsed envelope when there is one (its attributes are stored for
    listing; a message that did not verify keeps them too, marked by its reason). A body
    that is not an envelope, or with ``key_by_body`` (one that did not verify), is keyed by
    its SHA-256 instead of the id it claims.
    """
    text = body[:_MAX_BODY].decode("utf-8", errors="replace")
    by_body = event is None or key_by_body
    message_id = hashlib.sha256(body).hexdigest() if by_body or event is None else event.id
    values = {
        "source": event.source if event else None,
        "type": event.type if event else None,
        "partitionkey": event.partitionkey if event else None,
        "sequence": event.sequence if event else None,
        "reason": reason[:50],
        "error": error[:500],
        "attempts": attempts,
        "body": text,
        "status": "dead",
        "dead_lettered_at": time.time(),
    }
    statement = upsert(conn.dialect.name, table).values(
        consumer=consumer, message_id=message_id, replays=0, **values
    )
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.consumer, table.c.message_id], set_=values
    )
    await conn.execute(statement)


def _record(row: object) -> DeadLetterRecord:
    mapping = dict(row._mapping)  # type: ignore[attr-defined]
    return DeadLetterRecord(**mapping)


async def list_dead_letters(
    engine: AsyncEngine,
    table: Table,
    *,
    status: str | None = "dead",
    consumer: str | None = None,
    reason: str | None = None,
    limit: int = 100,
) -> list[DeadLetterRecord]:
    """Dead letters, oldest first; ``status=None`` lists replayed ones too."""
    query = select(table).order_by(table.c.dead_lettered_at, table.c.id).limit(limit)
    if status is not None:
        query = query.where(table.c.status == status)
    if consumer is not None:
        query = query.where(table.c.consumer == consumer)
    if reason is not None:
        query = query.where(table.c.reason == reason)
    async with engine.connect() as conn:
        return [_record(row) for row in await conn.execute(query)]


async def get_dead_letter(engine: AsyncEngine, table: Table, id: int) -> DeadLetterRecord | None:
    """The dead letter with row id ``id``, or None."""
    async with engine.connect() as conn:
        row = (await conn.execute(select(table).where(table.c.id == id))).first()
    return None if row is None else _record(row)


class ReplayRefused(MessagingError):
    """A dead letter that cannot be replayed (unknown id, already replayed, not an event)."""


async def replay_dead_letter(
    engine: AsyncEngine, table: Table, outbox: OutboxTables, id: int, *, again: bool = False
) -> CloudEvent:
    """Stage dead letter ``id`` in ``outbox`` again and mark it replayed, in one transaction.

    The body goes out byte for byte (the producer's signature still verifies), to the
    consumer that dead-lettered it (``saasfw-replay-to``), under the event's ordering key.
    A replayed row is refused unless ``again``. Returns the replayed event.
    """
    async with engine.begin() as conn:
        row = (await conn.execute(select(table).where(table.c.id == id).with_for_update())).first()
        if row is None:
            raise ReplayRefused(f"no dead letter with id {id}")
        record = _record(row)
        if record.status == "replayed" and not again:
            raise ReplayRefused(
                f"dead letter {id} was already replayed; pass --again to replay it once more"
            )
        try:
            event = CloudEvent.model_validate_json(record.body)
        except ValueError:
            raise ReplayRefused(
                f"dead letter {id} ({record.reason}) is not a CloudEvents envelope; "
                "it cannot be replayed"
            ) from None
        await stage_message(
            outbox,
            conn,
            key=event.partitionkey or event.id,
            type=event.type,
            payload=record.body,
            headers={"content-type": CONTENT_TYPE, REPLAY_HEADER: record.consumer},
            # A fresh outbox id: JetStream would drop a second Nats-Msg-Id in its window.
            message_id=uuid.uuid4().hex,
        )
        await conn.execute(
            update(table)
            .where(table.c.id == id)
            .values(status="replayed", replayed_at=time.time(), replays=table.c.replays + 1)
        )
    return event
