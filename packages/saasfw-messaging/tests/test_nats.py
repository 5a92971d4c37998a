"""Outbox, two relays, real NATS JetStream, two consumer replicas, one inbox; poison too."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from faststream.nats import ConsumerConfig, NatsBroker
from pydantic import BaseModel, SecretStr
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from saasfw.core.outbox import OutboxMessage, OutboxRelay, outbox_stats, outbox_tables
from saasfw.messaging import (
    CloudEvent,
    EventConsumer,
    EventSigner,
    EventVerifier,
    Publisher,
    Received,
    inbox_table,
)
from saasfw.messaging.nats import (
    NatsDelivery,
    NatsTopology,
    subscribe_nats,
    watch_max_deliveries,
)

pytestmark = [pytest.mark.nats, pytest.mark.postgres, pytest.mark.slow]

SOURCE = "/services/orders"
KEY = SecretStr("orders-key-" + "n" * 32)
EVENTS, KEYS, ATTEMPTS = 200, 10, 3


class OrderCreated(BaseModel):
    order_id: str


async def _wait_for(condition: Callable[[], Awaitable[bool]], what: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(0.2)


async def test_outbox_to_jetstream_once_in_order_with_dead_letters(
    nats_url: str, pg_engine: AsyncEngine
) -> None:
    suffix = uuid.uuid4().hex[:10]
    topology = NatsTopology(
        stream=f"saasfw_test_{suffix}", subject_prefix=f"saasfw-test-{suffix}", durable="orders"
    )
    metadata = MetaData()
    tables = outbox_tables(metadata=metadata)
    inbox = inbox_table(metadata=metadata)
    effects = Table(
        "effects",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("message_id", String(64), nullable=False),
        Column("ordering_key", String(50), nullable=False),
        Column("sequence", BigInteger, nullable=False),
    )
    async with pg_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    sessions = async_sessionmaker(pg_engine, expire_on_commit=False)

    # Two consumer replicas share the database (inbox and effects) and the subscription.
    consumers = [
        EventConsumer(
            sessions,
            inbox,
            EventVerifier({SOURCE: {"k1": KEY}}),
            max_attempts=ATTEMPTS,
            retry_backoff=0.05,
            retry_max_backoff=0.2,
        )
        for _ in range(2)
    ]

    def stats(counter: str) -> int:
        return sum(getattr(consumer.stats, counter) for consumer in consumers)

    async def on_created(received: Received[OrderCreated], session: AsyncSession) -> None:
        if received.data.order_id.startswith("poison"):
            raise RuntimeError(f"order {received.data.order_id} cannot be shipped")
        event = received.event
        assert event.partitionkey is not None
        assert event.sequence is not None
        await session.execute(
            insert(effects).values(
                message_id=event.id, ordering_key=event.partitionkey, sequence=event.sequence
            )
        )

    for consumer in consumers:
        consumer.add_handler("orders.order.created.v1", OrderCreated, on_created)

    consumer_brokers = [NatsBroker(nats_url, logger=None) for _ in range(2)]
    relay_brokers = [NatsBroker(nats_url, logger=None) for _ in range(2)]
    subscriptions = [
        subscribe_nats(broker, consumer, topology, ack_wait=30)
        for broker, consumer in zip(consumer_brokers, consumers, strict=True)
    ]
    for broker in consumer_brokers:
        await broker.connect()
    await subscriptions[0].declare()
    for broker in consumer_brokers:
        await broker.start()

    publisher = Publisher(tables, EventSigner(SOURCE, "k1", KEY), tenant=lambda: "acme")
    published: list[CloudEvent] = []
    for batch in range(EVENTS // 20):
        async with sessions() as session, session.begin():
            for n in range(20):
                index = batch * 20 + n
                event = CloudEvent.create(
                    "orders.order.created.v1", OrderCreated(order_id=f"order-{index}")
                )
                published.append(
                    await publisher.publish(session, event, key=f"customer-{index % KEYS}")
                )
            if batch == 3:
                await publisher.publish(
                    session,
                    CloudEvent.create("orders.order.created.v1", OrderCreated(order_id="poison-1")),
                    key="customer-poison",
                )

    relays = []
    for broker in relay_brokers:
        await broker.connect()
        relays.append(
            OutboxRelay(
                tables,
                pg_engine,
                NatsDelivery(broker, topology),
                batch_size=7,
                max_keys=4,
                poll_interval=0.1,
            )
        )
    js = (await consumer_brokers[0].connect()).jetstream()

    async def effects_count() -> int:
        async with pg_engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(effects))).scalar_one())

    async def all_effects_and_one_dead_letter() -> bool:
        return await effects_count() >= EVENTS and stats("dead_lettered") >= 1

    try:
        async with relays[0], relays[1]:
            await _wait_for(all_effects_and_one_dead_letter, "200 effects and a dead letter", 180)
            assert (await outbox_stats(tables, pg_engine)).depth == 0
            # Both relays took part (per-key leases spread the keys between them).
            assert all(relay.state.delivered > 0 for relay in relays)

            # A relay that crashed after publishing, before deleting, publishes again:
            # within the duplicate window JetStream drops it by its Nats-Msg-Id ...
            again = _as_outbox_message(published[0])
            ack = await relay_brokers[0].publish(
                again.payload.encode(),
                topology.subject(again.type),
                headers={"Nats-Msg-Id": again.message_id},
                stream=topology.stream,
            )
            assert ack.duplicate
            # ... and after the window (another Nats-Msg-Id here) the inbox absorbs it.
            await relay_brokers[0].publish(
                again.payload.encode(),
                topology.subject(again.type),
                headers={"Nats-Msg-Id": again.message_id + "-late"},
                stream=topology.stream,
            )
            await _wait_for(lambda: _true(stats("duplicates") >= 1), "the duplicate to be seen", 60)
            # An event whose actor was changed in transit fails verification: dead-lettered
            # on its first delivery, its claimed actor never reaching the handler.
            await NatsDelivery(relay_brokers[0], topology)(_forged(published[1]))
            await _wait_for(
                lambda: _true(stats("dead_lettered") >= 2), "the forgery's dead letter", 60
            )

        assert await effects_count() == EVENTS
        async with pg_engine.connect() as conn:
            rows = (await conn.execute(select(effects).order_by(effects.c.id))).all()
        assert len({row.message_id for row in rows}) == EVENTS
        by_key: dict[str, list[int]] = {}
        for row in rows:
            by_key.setdefault(row.ordering_key, []).append(row.sequence)
        assert len(by_key) == KEYS
        for key, sequences in by_key.items():
            assert sequences == list(range(1, EVENTS // KEYS + 1)), key

        assert (await js.stream_info(topology.dead_letter_stream)).state.messages == 2
        dead_letters = {}
        for sequence in (1, 2):
            dead = await js.get_msg(topology.dead_letter_stream, sequence)
            assert dead.headers is not None
            dead_letters[dead.headers["Saasfw-Dead-Letter-Reason"]] = dead
        assert sorted(dead_letters) == ["handler-failed", "signature-mismatch"]
        poison = dead_letters["handler-failed"]
        assert poison.headers is not None
        assert poison.headers["Saasfw-Attempts"] == str(ATTEMPTS)
        assert "order poison-1 cannot be shipped" in poison.headers["Saasfw-Dead-Letter-Error"]
        assert poison.data is not None
        assert CloudEvent.model_validate_json(poison.data).data == {"order_id": "poison-1"}
        forged = dead_letters["signature-mismatch"]
        assert forged.headers is not None
        assert forged.headers["Saasfw-Attempts"] == "1"
    finally:
        await _delete_topology(consumer_brokers[0], topology)
        for broker in (*consumer_brokers, *relay_brokers):
            await broker.stop()


def _forged(event: CloudEvent) -> OutboxMessage:
    forged = event.model_copy(update={"id": uuid.uuid4().hex, "actor": "admin"})
    return _as_outbox_message(forged)


async def _true(value: bool) -> bool:
    return value


def _as_outbox_message(event: CloudEvent) -> OutboxMessage:
    return OutboxMessage(
        message_id=event.id,
        ordering_key=event.partitionkey or "",
        sequence=event.sequence or 0,
        type=event.type,
        payload=event.to_json(),
        headers={},
        created_at=time.time(),
        attempts=0,
    )


async def _delete_topology(broker: NatsBroker, topology: NatsTopology) -> None:
    js = (await broker.connect()).jetstream()
    for stream in (topology.stream, topology.dead_letter_stream):
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)


async def test_event_jetstream_stops_redelivering_is_dead_lettered(nats_url: str) -> None:
    """A consumer that crashes on an event every time: max_deliver ends, the watch parks it."""
    suffix = uuid.uuid4().hex[:10]
    topology = NatsTopology(
        stream=f"saasfw_test_{suffix}", subject_prefix=f"saasfw-test-{suffix}", durable="crashy"
    )
    broker = NatsBroker(nats_url, logger=None)
    watch_max_deliveries(broker, topology)
    await topology.declare(broker)
    await broker.start()
    js = (await broker.connect()).jetstream()
    try:
        await js.add_consumer(
            topology.stream,
            ConsumerConfig(durable_name=topology.durable, max_deliver=2, ack_wait=1.0),
        )
        event = EventSigner(SOURCE, "k1", KEY).sign(
            CloudEvent.create("orders.order.created.v1", OrderCreated(order_id="crash"))
        )
        await NatsDelivery(broker, topology)(_as_outbox_message(event))
        # Two "processes" take the event and die before acknowledging it.
        crashing = await js.pull_subscribe_bind(topology.durable, topology.stream)
        for _ in range(2):
            fetched = await crashing.fetch(1, timeout=10)
            assert len(fetched) == 1

        async def parked() -> bool:
            # Keep pulling, as a restarted replica would: the pulls find nothing, since
            # JetStream gave up on the event, and announced it.
            with contextlib.suppress(TimeoutError):
                assert await crashing.fetch(1, timeout=1) == []
            info = await js.stream_info(topology.dead_letter_stream)
            return info.state.messages >= 1

        await _wait_for(parked, "the watch to dead-letter the event", 60)
        await crashing.unsubscribe()
        dead = await js.get_last_msg(topology.dead_letter_stream, topology.dead_letter_subject)
        assert dead.headers is not None
        assert dead.headers["Saasfw-Dead-Letter-Reason"] == "max-deliveries"
        assert dead.headers["Saasfw-Attempts"] == "2"
        assert dead.data is not None
        assert CloudEvent.model_validate_json(dead.data) == event
    finally:
        await _delete_topology(broker, topology)
        await broker.stop()
