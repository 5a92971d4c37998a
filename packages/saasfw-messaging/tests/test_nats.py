"""Outbox, two relays, real NATS JetStream, two consumer replicas, one inbox; poison too."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from faststream.nats import ConsumerConfig, NatsBroker
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from saasfw.core.outbox import OutboxMessage, outbox_stats
from saasfw.messaging import (
    CloudEvent,
    EventConsumer,
    EventSigner,
    EventVerifier,
    dead_letter_table,
    inbox_table,
    list_dead_letters,
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
    nats_url: str, order_flow: Any, tools: Any
) -> None:
    flow = order_flow
    suffix = uuid.uuid4().hex[:10]
    topology = NatsTopology(
        stream=f"saasfw_test_{suffix}", subject_prefix=f"saasfw-test-{suffix}", durable="orders"
    )
    consumer_brokers = [NatsBroker(nats_url, logger=None) for _ in range(2)]
    relay_brokers = [NatsBroker(nats_url, logger=None) for _ in range(2)]
    subscriptions = [
        subscribe_nats(broker, consumer, topology, ack_wait=30)
        for broker, consumer in zip(consumer_brokers, flow.consumers, strict=True)
    ]
    for broker in (*consumer_brokers, *relay_brokers):
        await broker.connect()
    await subscriptions[0].declare()
    for broker in consumer_brokers:
        await broker.start()
    published = await flow.stage()
    relays = flow.relays([NatsDelivery(broker, topology) for broker in relay_brokers])
    try:
        async with relays[0], relays[1]:
            await tools.wait_for(flow.all_handled, "200 effects and a dead letter", 180)
            assert (await outbox_stats(flow.tables, flow.engine)).depth == 0
            # The two relays shared one outbox and relayed each staged event once (the poison
            # one too). Whether both took part depends on timing, so it is not asserted.
            assert sum(relay.state.delivered for relay in relays) == flow.events + 1

            await _publish_twice(relay_brokers[0], topology, tools.as_outbox_message(published[0]))
            await tools.wait_for(
                lambda: _true(flow.stats("duplicates") >= 1), "the duplicate to be seen", 60
            )
            # An event whose actor was changed in transit fails verification: dead-lettered
            # on its first delivery, its claimed actor never reaching the handler.
            await NatsDelivery(relay_brokers[0], topology)(tools.forged(published[1]))
            await tools.wait_for(
                lambda: _true(flow.stats("dead_lettered") >= 2), "the forgery's dead letter", 60
            )

        await flow.assert_once_in_order()
        js = (await consumer_brokers[0].connect()).jetstream()
        await _assert_dead_letters(js, topology, flow.attempts)
    finally:
        for broker in consumer_brokers:
            await broker.stop()
        await _delete_topology(relay_brokers[0], topology)
        for broker in relay_brokers:
            await broker.stop()


async def _publish_twice(broker: NatsBroker, topology: NatsTopology, again: OutboxMessage) -> None:
    """A relay that crashed after publishing, before deleting, publishes again."""
    # Within the duplicate window JetStream drops it by its Nats-Msg-Id ...
    ack = await broker.publish(
        again.payload.encode(),
        topology.subject(again.type),
        headers={"Nats-Msg-Id": again.message_id},
        stream=topology.stream,
    )
    assert ack.duplicate
    # ... and after the window (another Nats-Msg-Id here) the inbox absorbs it.
    await broker.publish(
        again.payload.encode(),
        topology.subject(again.type),
        headers={"Nats-Msg-Id": again.message_id + "-late"},
        stream=topology.stream,
    )


async def _assert_dead_letters(js: Any, topology: NatsTopology, attempts: int) -> None:
    """The poison event after ``attempts`` tries, and the forgery at once, with reasons."""
    assert (await js.stream_info(topology.dead_letter_stream)).state.messages == 2
    dead_letters = {}
    for sequence in (1, 2):
        dead = await js.get_msg(topology.dead_letter_stream, sequence)
        assert dead.headers is not None
        dead_letters[dead.headers["Saasfw-Dead-Letter-Reason"]] = dead
    assert sorted(dead_letters) == ["handler-failed", "signature-mismatch"]
    poison = dead_letters["handler-failed"]
    assert poison.headers["Saasfw-Attempts"] == str(attempts)
    assert "order poison-1 cannot be shipped" in poison.headers["Saasfw-Dead-Letter-Error"]
    assert CloudEvent.model_validate_json(poison.data).data == {"order_id": "poison-1"}
    assert dead_letters["signature-mismatch"].headers["Saasfw-Attempts"] == "1"


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


async def test_event_jetstream_stops_redelivering_is_dead_lettered(
    nats_url: str, tmp_path: Path
) -> None:
    """A consumer that crashes on an event every time: max_deliver ends, the watch parks it."""
    suffix = uuid.uuid4().hex[:10]
    topology = NatsTopology(
        stream=f"saasfw_test_{suffix}", subject_prefix=f"saasfw-test-{suffix}", durable="crashy"
    )
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'dead.db'}")
    dead_letters = dead_letter_table()
    async with engine.begin() as conn:
        await conn.run_sync(dead_letters.metadata.create_all)
    consumer = EventConsumer(
        async_sessionmaker(engine),
        inbox_table(),
        EventVerifier({SOURCE: {"k1": KEY}}),
        dead_letters=dead_letters,
    )
    broker = NatsBroker(nats_url, logger=None)
    watch_max_deliveries(broker, topology, consumer=consumer)
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
        # The consumer's dead-letter table has it too, with its reason, for the CLI.
        [record] = await list_dead_letters(engine, dead_letters)
        assert (record.consumer, record.message_id) == ("crashy", event.id)
        assert (record.reason, record.attempts) == ("max-deliveries", 2)
        assert consumer.stats.dead_lettered == 1
    finally:
        await _delete_topology(broker, topology)
        await broker.stop()
        await engine.dispose()
