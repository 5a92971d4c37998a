"""A dead letter replayed on the real NATS JetStream gets past the duplicate window, once."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from faststream.nats import NatsBroker
from pydantic import BaseModel, SecretStr
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from saasfw.core.outbox import OutboxRelay, outbox_tables
from saasfw.messaging import (
    CloudEvent,
    EventConsumer,
    EventSigner,
    EventVerifier,
    Publisher,
    Received,
    dead_letter_table,
    inbox_table,
    list_dead_letters,
    replay_dead_letter,
)
from saasfw.messaging.nats import NatsDelivery, NatsTopology, subscribe_nats

pytestmark = [pytest.mark.nats, pytest.mark.postgres, pytest.mark.slow]

SOURCE = "/services/orders"
KEY = SecretStr("dead-letter-key-" + "j" * 32)
TYPE = "orders.order.created.v1"


class OrderCreated(BaseModel):
    order_id: str


async def test_a_replayed_dead_letter_is_delivered_within_the_duplicate_window(
    nats_url: str, pg_engine: AsyncEngine, tools: Any
) -> None:
    metadata = MetaData()
    outbox = outbox_tables(metadata=metadata)
    inbox = inbox_table(metadata=metadata)
    dead = dead_letter_table(metadata=metadata)
    effects = Table(
        "effects",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_id", String(50), nullable=False),
    )
    async with pg_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    sessions = async_sessionmaker(pg_engine, expire_on_commit=False)
    broken = {"bad-1"}

    async def ship(received: Received[OrderCreated], session: AsyncSession) -> None:
        if received.data.order_id in broken:
            raise RuntimeError(f"cannot ship {received.data.order_id}")
        await session.execute(insert(effects).values(order_id=received.data.order_id))

    consumer = EventConsumer(
        sessions,
        inbox,
        EventVerifier({SOURCE: {"k1": KEY}}),
        max_attempts=2,
        retry_backoff=0.05,
        dead_letters=dead,
    )
    consumer.add_handler(TYPE, OrderCreated, ship)
    suffix = uuid.uuid4().hex[:10]
    topology = NatsTopology(
        stream=f"saasfw_dl_{suffix}", subject_prefix=f"saasfw-dl-{suffix}", durable="shipping"
    )
    broker = NatsBroker(nats_url, logger=None)
    subscribe_nats(broker, consumer, topology, ack_wait=30)
    await broker.connect()
    await topology.declare(broker)
    await broker.start()
    publisher = Publisher(outbox, EventSigner(SOURCE, "k1", KEY))
    async with sessions() as session, session.begin():
        event = await publisher.publish(
            session, CloudEvent.create(TYPE, OrderCreated(order_id="bad-1")), key="bad-1"
        )
    try:
        async with OutboxRelay(
            outbox, pg_engine, NatsDelivery(broker, topology), poll_interval=0.1
        ):

            async def parked() -> bool:
                return bool(await list_dead_letters(pg_engine, dead))

            await tools.wait_for(parked, "the dead letter in the table", 60)
            [record] = await list_dead_letters(pg_engine, dead)
            assert (record.consumer, record.message_id) == ("shipping", event.id)
            broken.clear()
            replayed = await replay_dead_letter(pg_engine, dead, outbox, record.id)
            assert replayed == event  # byte for byte: the producer's signature still holds

            async def shipped() -> bool:
                async with pg_engine.connect() as conn:
                    rows = (await conn.execute(select(effects.c.order_id))).scalars().all()
                return list(rows) == ["bad-1"]

            # Seconds after the first publication: a reused Nats-Msg-Id would be dropped.
            await tools.wait_for(shipped, "the replayed event to be applied", 60)
    finally:
        js = (await broker.connect()).jetstream()
        for stream in (topology.stream, topology.dead_letter_stream):
            with contextlib.suppress(Exception):
                await js.delete_stream(stream)
        await broker.stop()
    assert await list_dead_letters(pg_engine, dead) == []  # only replayed ones are left
    [again] = await list_dead_letters(pg_engine, dead, status=None)
    assert (again.status, again.replays) == ("replayed", 1)
