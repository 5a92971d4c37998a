"""Shutdown drain on the real RabbitMQ: in-flight handlers finish, the rest goes back, once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from faststream.rabbit import RabbitBroker
from pydantic import BaseModel, SecretStr
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from saasfw.messaging import (
    CloudEvent,
    EventConsumer,
    EventSigner,
    EventVerifier,
    Received,
    inbox_table,
)
from saasfw.messaging.rabbit import RabbitDelivery, RabbitTopology, subscribe_rabbit

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]

SOURCE = "/services/orders"
KEY = SecretStr("drain-key-" + "d" * 32)


class Task(BaseModel):
    name: str


async def test_drain_finishes_in_flight_returns_the_rest_and_nothing_runs_twice(
    rabbitmq_url: str, pg_engine: AsyncEngine, tools: Any
) -> None:
    metadata = MetaData()
    inbox = inbox_table(metadata=metadata)
    effects = Table(
        "effects",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(50), nullable=False),
    )
    async with pg_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    sessions = async_sessionmaker(pg_engine, expire_on_commit=False)
    started: list[tuple[str, int]] = []
    release_stuck = asyncio.Event()

    async def on_task(received: Received[Task], session: AsyncSession) -> None:
        started.append((received.data.name, received.attempt))
        if received.data.name == "stuck" and received.attempt == 1:
            await release_stuck.wait()  # never set: only the drain's cancel ends it
        else:
            await asyncio.sleep(1.0)
        await session.execute(insert(effects).values(name=received.data.name))

    def make_consumer() -> EventConsumer:
        consumer = EventConsumer(
            sessions, inbox, EventVerifier({SOURCE: {"k1": KEY}}), max_attempts=5
        )
        consumer.add_handler("tasks.task.queued.v1", Task, on_task)
        return consumer

    suffix = uuid.uuid4().hex[:10]
    topology = RabbitTopology(exchange=f"saasfw-drain-{suffix}", queue=f"saasfw-drain-{suffix}")
    first_broker = RabbitBroker(rabbitmq_url, logger=None)
    first = make_consumer()
    subscription = subscribe_rabbit(first_broker, first, topology, ordered=False, prefetch=10)
    await first_broker.connect()
    await subscription.declare()
    await first_broker.start()
    signer = EventSigner(SOURCE, "k1", KEY)
    names = ["stuck", *(f"task-{n}" for n in range(5))]
    deliver = RabbitDelivery(first_broker, topology.exchange)
    for index, name in enumerate(names):
        event = signer.sign(
            CloudEvent.create(
                "tasks.task.queued.v1", Task(name=name), partitionkey=name, sequence=index + 1
            )
        )
        await deliver(tools.as_outbox_message(event))
    await tools.wait_for(
        lambda: _true(subscription.in_flight >= 3), "several handlers to be in flight", 60
    )
    in_flight_at_shutdown = subscription.in_flight
    report = await subscription.drain(budget=10.0)
    await first_broker.stop()
    # The stuck handler was cancelled and handed back; the others finished and acknowledged.
    assert report.returned == 1
    assert report.finished == in_flight_at_shutdown - 1
    assert first.stats.processed == report.finished

    second_broker = RabbitBroker(rabbitmq_url, logger=None)
    second = make_consumer()
    subscribe_rabbit(second_broker, second, topology, ordered=False, prefetch=10)
    await second_broker.start()
    try:

        async def all_done() -> bool:
            async with pg_engine.connect() as conn:
                return len((await conn.execute(select(effects.c.name))).all()) >= len(names)

        await tools.wait_for(all_done, "every task's effect after the restart", 60)
        await asyncio.sleep(1.0)  # a late duplicate would show up here
    finally:
        await second_broker.stop()
    async with pg_engine.connect() as conn:
        done = sorted((await conn.execute(select(effects.c.name))).scalars())
    assert done == sorted(names)  # each exactly once
    # What the first replica finished was acknowledged: the second never saw it again.
    assert second.stats.duplicates == 0
    assert first.stats.processed + second.stats.processed == len(names)
    # The cancelled one ran again after the restart, as a later delivery.
    assert [attempt > 1 for name, attempt in started if name == "stuck"] == [False, True]


async def _true(value: bool) -> bool:
    return value
