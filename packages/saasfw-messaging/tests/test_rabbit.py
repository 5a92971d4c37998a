"""Outbox, two relays, real RabbitMQ, two consumer replicas, one inbox; poison too."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import aiormq.abc
import pytest
from faststream.rabbit import ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.schemas import QueueType
from pydantic import BaseModel, SecretStr
from sqlalchemy.ext.asyncio import (
    async_sessionmaker,
    create_async_engine,
)

from saasfw.core.outbox import OutboxMessage, outbox_stats
from saasfw.messaging import (
    CloudEvent,
    EventConsumer,
    EventSigner,
    EventVerifier,
    MessagingError,
    inbox_table,
)
from saasfw.messaging.rabbit import RabbitDelivery, RabbitTopology, subscribe_rabbit

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]

SOURCE = "/services/orders"
KEY = SecretStr("orders-key-" + "r" * 32)
EVENTS, KEYS, ATTEMPTS = 200, 10, 3


class OrderCreated(BaseModel):
    order_id: str


async def test_outbox_to_rabbitmq_once_in_order_with_dead_letters(
    rabbitmq_url: str, order_flow: Any, tools: Any
) -> None:
    flow = order_flow
    suffix = uuid.uuid4().hex[:10]
    topology = RabbitTopology(exchange=f"saasfw-test-{suffix}", queue=f"saasfw-test-{suffix}")
    consumer_brokers = [RabbitBroker(rabbitmq_url, logger=None) for _ in range(2)]
    relay_brokers = [RabbitBroker(rabbitmq_url, logger=None) for _ in range(2)]
    subscriptions = [
        subscribe_rabbit(broker, consumer, topology)
        for broker, consumer in zip(consumer_brokers, flow.consumers, strict=True)
    ]
    for broker in (*consumer_brokers, *relay_brokers):
        await broker.connect()
    await subscriptions[0].declare()
    for broker in consumer_brokers:
        await broker.start()
    published = await flow.stage()
    relays = flow.relays([RabbitDelivery(b, topology.exchange) for b in relay_brokers])
    dead_queue = await consumer_brokers[0].declare_queue(
        RabbitQueue(topology.dead_letter_queue, queue_type=QueueType.QUORUM, durable=True)
    )
    try:
        async with relays[0], relays[1]:
            await tools.wait_for(flow.all_handled, "200 effects and a dead letter", 180)
            assert (await outbox_stats(flow.tables, flow.engine)).depth == 0
            # The two relays shared one outbox and relayed each staged event once (the poison
            # one too). Whether both took part depends on timing, so it is not asserted.
            assert sum(relay.state.delivered for relay in relays) == flow.events + 1

            # A redelivery (a relay that crashed after publishing, before deleting) is
            # absorbed by the inbox: publish an already-processed event once more.
            again = RabbitDelivery(relay_brokers[0], topology.exchange)
            await again(tools.as_outbox_message(published[0]))
            await tools.wait_for(
                lambda: _true(flow.stats("duplicates") >= 1), "the duplicate to be seen", 60
            )
            # An event whose actor was changed in transit fails verification: dead-lettered
            # on its first delivery, its claimed actor never reaching the handler.
            await again(tools.forged(published[1]))
            await tools.wait_for(
                lambda: _true(flow.stats("dead_lettered") >= 2), "the forgery's dead letter", 60
            )

        await flow.assert_once_in_order()
        dead_letters = {}
        while (dead := await dead_queue.get(no_ack=True, fail=False, timeout=10)) is not None:
            dead_letters[dead.headers["x-saasfw-dead-letter-reason"]] = dead
        assert sorted(dead_letters) == ["handler-failed", "signature-mismatch"]
        poison = dead_letters["handler-failed"]
        assert poison.headers["x-saasfw-attempts"] == flow.attempts
        error = poison.headers["x-saasfw-dead-letter-error"]
        assert isinstance(error, str)
        assert "order poison-1 cannot be shipped" in error
        assert CloudEvent.model_validate_json(poison.body).data == {"order_id": "poison-1"}
        assert dead_letters["signature-mismatch"].headers["x-saasfw-attempts"] == 1
    finally:
        # Consumers first: a robust channel re-declares a queue deleted under its consumer.
        for broker in consumer_brokers:
            await broker.stop()
        await _delete_topology(relay_brokers[0], topology)
        for broker in relay_brokers:
            await broker.stop()


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


async def _delete_topology(broker: RabbitBroker, topology: RabbitTopology) -> None:
    # A channel of its own: the broker's may be closed by an error the test provoked.
    async with (await broker.connect()).channel() as channel:
        unrouted = f"{topology.exchange}.unrouted"
        for queue_name in (topology.queue, topology.dead_letter_queue, unrouted):
            await channel.queue_delete(queue_name)
        for exchange_name in (topology.exchange, topology.dead_letter_exchange, unrouted):
            await channel.exchange_delete(exchange_name)


async def test_event_nobody_consumes_yet_is_kept_not_dropped(rabbitmq_url: str) -> None:
    topology = RabbitTopology(exchange=f"saasfw-test-{uuid.uuid4().hex[:10]}", queue="unused")
    broker = RabbitBroker(rabbitmq_url, logger=None)
    await broker.connect()
    delivery = RabbitDelivery(broker, topology.exchange)
    await delivery.declare()
    event = EventSigner(SOURCE, "k1", KEY).sign(
        CloudEvent.create("orders.order.created.v1", OrderCreated(order_id="1"))
    )
    try:
        # No queue is bound: the alternate exchange keeps it, and the relay moves on.
        await delivery(_as_outbox_message(event))
        kept = await broker.declare_queue(
            RabbitQueue(f"{topology.exchange}.unrouted", declare=False)
        )
        message = await kept.get(no_ack=True, fail=False, timeout=10)
        assert message is not None
        assert CloudEvent.model_validate_json(message.body) == event
    finally:
        await _delete_topology(broker, topology)
        await broker.stop()


async def test_unroutable_event_raises_so_the_relay_keeps_it(rabbitmq_url: str) -> None:
    """Without the alternate exchange (not declared by saasfw) a return is an error."""
    topology = RabbitTopology(exchange=f"saasfw-test-{uuid.uuid4().hex[:10]}", queue="unused")
    broker = RabbitBroker(rabbitmq_url, logger=None)
    connection = await broker.connect()
    async with connection.channel() as channel:
        await channel.declare_exchange(topology.exchange, "topic", durable=True)
    event = EventSigner(SOURCE, "k1", KEY).sign(
        CloudEvent.create("orders.order.created.v1", OrderCreated(order_id="1"))
    )
    bare = RabbitExchange(topology.exchange, type=ExchangeType.TOPIC, durable=True)
    try:
        result = await broker.publish(b"{}", exchange=bare, routing_key="x", mandatory=True)
        assert isinstance(result, aiormq.abc.DeliveredMessage)  # returned, not Basic.Ack
        with pytest.raises(MessagingError, match="unroutable"):
            await RabbitDelivery(broker, topology.exchange)(_as_outbox_message(event))
    finally:
        await _delete_topology(broker, topology)
        await broker.stop()


async def test_event_crashing_every_consumer_is_dead_lettered_by_the_broker(
    rabbitmq_url: str, tmp_path: Path
) -> None:
    """A consumer that dies on an event every time never records attempts; the queue does."""
    suffix = uuid.uuid4().hex[:10]
    topology = RabbitTopology(exchange=f"saasfw-test-{suffix}", queue=f"saasfw-test-{suffix}")
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    consumer = EventConsumer(
        async_sessionmaker(engine), inbox_table(), EventVerifier({}), max_attempts=1
    )
    broker = RabbitBroker(rabbitmq_url, logger=None)
    # Unordered: basic.get, which plays the crashing consumer here, refuses a queue with
    # a single active consumer; the delivery limit is the same either way.
    subscription = subscribe_rabbit(
        broker, consumer, topology, bindings=["orders.order.created.v1"], ordered=False
    )
    await broker.connect()
    await subscription.declare()
    event = EventSigner(SOURCE, "k1", KEY).sign(
        CloudEvent.create("orders.order.created.v1", OrderCreated(order_id="crash"))
    )
    try:
        await RabbitDelivery(broker, topology.exchange)(_as_outbox_message(event))
        # "Crashing" consumers: each takes the event and gives it back unprocessed.
        queue = await broker.declare_queue(RabbitQueue(topology.queue, declare=False))
        deliveries = 0
        while (taken := await queue.get(no_ack=False, fail=False, timeout=10)) is not None:
            deliveries += 1
            await taken.nack(requeue=True)
            assert deliveries < 50, "the queue never gave up on the event"
        assert deliveries == consumer.max_attempts + 4  # the x-delivery-limit, then once more
        dead_queue = await broker.declare_queue(
            RabbitQueue(topology.dead_letter_queue, declare=False)
        )
        dead = await dead_queue.get(no_ack=True, fail=False, timeout=10)
        assert dead is not None
        assert CloudEvent.model_validate_json(dead.body) == event
        death = dead.headers["x-death"]
        assert isinstance(death, list)
        assert death[0]["reason"] == "delivery_limit"
    finally:
        await _delete_topology(broker, topology)
        await broker.stop()
        await engine.dispose()
