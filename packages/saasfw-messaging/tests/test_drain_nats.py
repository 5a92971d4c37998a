"""Shutdown drain on the real NATS JetStream: the running handler finishes or is handed back."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from faststream.nats import NatsBroker
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
from saasfw.messaging.nats import NatsDelivery, NatsTopology, subscribe_nats

pytestmark = [pytest.mark.nats, pytest.mark.postgres, pytest.mark.slow]

SOURCE = "/services/orders"
KEY = SecretStr("drain-key-" + "n" * 32)


class Task(BaseModel):
    name: str


async def test_nats_drain_hands_back_the_stuck_handler_and_nothing_runs_twice(
    nats_url: str, pg_engine: AsyncEngine, tools: Any
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
    never = asyncio.Event()

    async def on_task(received: Received[Task], session: AsyncSession) -> None:
        started.append((received.data.name, received.attempt))
        if received.data.name == "stuck" and [n for n, _ in started].count("stuck") == 1:
            # The first run blocks until the drain cancels it. (Not keyed on the attempt:
            # JetStream sometimes reports a redelivery after a nak as num_delivered=1.)
            await never.wait()
        await session.execute(insert(effects).values(name=received.data.name))

    def make_consumer() -> EventConsumer:
        consumer = EventConsumer(
            sessions, inbox, EventVerifier({SOURCE: {"k1": KEY}}), max_attempts=5
        )
        consumer.add_handler("tasks.task.queued.v1", Task, on_task)
        return consumer

    suffix = uuid.uuid4().hex[:10]
    topology = NatsTopology(
        stream=f"saasfw_drain_{suffix}", subject_prefix=f"saasfw-drain-{suffix}", durable="tasks"
    )
    first_broker = NatsBroker(nats_url, logger=None)
    first = make_consumer()
    subscription = subscribe_nats(first_broker, first, topology, ack_wait=30, ordered=False)
    await first_broker.connect()
    await subscription.declare()
    await first_broker.start()
    signer = EventSigner(SOURCE, "k1", KEY)
    names = ["done-first", "stuck", "after"]
    deliver = NatsDelivery(first_broker, topology)
    for index, name in enumerate(names):
        event = signer.sign(
            CloudEvent.create(
                "tasks.task.queued.v1", Task(name=name), partitionkey="k", sequence=index + 1
            )
        )
        await deliver(tools.as_outbox_message(event))
    await tools.wait_for(
        lambda: _true(("stuck", 1) in started and subscription.in_flight == 1),
        "the stuck handler to be running",
        60,
    )
    report = await subscription.drain(budget=0.5)
    await first_broker.stop()
    assert report.returned == 1
    assert report.finished == 0

    second_broker = NatsBroker(nats_url, logger=None)
    second = make_consumer()
    subscribe_nats(second_broker, second, topology, ack_wait=30, ordered=False)
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
    assert second.stats.duplicates == 0
    assert first.stats.processed + second.stats.processed == len(names)
    assert [name for name, _ in started].count("stuck") == 2  # cancelled once, then done


async def _true(value: bool) -> bool:
    return value
