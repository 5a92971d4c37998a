"""The in-process transport: outbox → relay → MemoryBus → consumer, with no broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from pydantic import BaseModel, SecretStr
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from saasfw.core.outbox import OutboxRelay, outbox_tables
from saasfw.messaging import (
    CloudEvent,
    EventConsumer,
    EventSigner,
    EventVerifier,
    MessagingSettings,
    Publisher,
    Received,
    inbox_table,
    messaging_production_problems,
)
from saasfw.messaging.memory import MemoryBus, MemoryDelivery, subscribe_memory

SOURCE = "/services/orders"
KEY = SecretStr("orders-key-" + "m" * 32)


class OrderCreated(BaseModel):
    order_id: str


async def _wait_for(condition: object, seconds: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.mark.asyncio
async def test_events_flow_once_in_order_and_a_poison_one_is_dead_lettered(
    engine: AsyncEngine,
) -> None:
    metadata = MetaData()
    effects = Table(
        f"effects_{uuid.uuid4().hex[:8]}",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("order_id", String(50), nullable=False),
    )
    outbox = outbox_tables(f"outbox_{uuid.uuid4().hex[:8]}", metadata=metadata)
    inbox = inbox_table(f"inbox_{uuid.uuid4().hex[:8]}", metadata=metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    publisher = Publisher(outbox, EventSigner(SOURCE, "k1", KEY))
    consumer = EventConsumer(
        sessions,
        inbox,
        EventVerifier({SOURCE: {"k1": KEY}}),
        max_attempts=2,
        retry_backoff=0.01,
        retry_max_backoff=0.02,
    )

    @consumer.handler("orders.order.created.v1", OrderCreated)
    async def on_created(received: Received[OrderCreated], session: AsyncSession) -> None:
        if received.data.order_id == "poison":
            raise ValueError("cannot project this order")
        await session.execute(insert(effects).values(order_id=received.data.order_id))

    bus = MemoryBus(f"events-{uuid.uuid4().hex[:8]}")
    subscription = subscribe_memory(bus, consumer, "projection")
    await subscription.start()
    relay = OutboxRelay(outbox, engine, MemoryDelivery(bus), poll_interval=0.05)
    names = [f"o-{n}" for n in range(20)] + ["poison", "o-20"]
    async with relay:
        for name in names:
            async with sessions() as session, session.begin():
                await publisher.publish(
                    session,
                    CloudEvent.create("orders.order.created.v1", OrderCreated(order_id=name)),
                    key="customer-1",
                )
            relay.wake()

        async def projected() -> list[str]:
            async with engine.connect() as conn:
                rows = await conn.execute(select(effects.c.order_id).order_by(effects.c.id))
                return [row[0] for row in rows]

        seen: list[str] = []

        def done() -> bool:
            return len(seen) == 21 and len(bus.dead_letters("projection")) == 1

        deadline = asyncio.get_running_loop().time() + 30
        while not done():
            assert asyncio.get_running_loop().time() < deadline, (
                seen,
                bus.dead_letters("projection"),
            )
            seen[:] = await projected()
            await asyncio.sleep(0.02)
    report = await subscription.drain(budget=1.0)
    assert report.returned == 0
    assert seen == [n for n in names if n != "poison"]  # once each, in the key's order
    assert b'"poison"' in bus.dead_letters("projection")[0]


def test_production_refuses_the_in_process_transport() -> None:
    problems = messaging_production_problems(
        MessagingSettings(
            kind="memory",
            broker_url=SecretStr("memory://local"),
            signing_key_id="k1",
            signing_key=KEY,
        )
    )
    assert any("development only" in p for p in problems)
