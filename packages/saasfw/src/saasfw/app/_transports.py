"""The broker behind ``messaging.kind``: RabbitMQ, NATS JetStream, or the in-process bus.

Each transport gives the relay its delivery callable, subscribes a consumer for a queue,
and connects. A broker that is down at start-up does not stop the service: the relay keeps
the events in the outbox and retries, readiness reports the broker as degraded, and a
background task connects, declares and starts consuming once the broker answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from saasfw.messaging import EventConsumer, MessagingSettings

if TYPE_CHECKING:
    from saasfw.app._messaging import EventHandlers

__all__ = ["Transport", "transport_for"]

_log = logging.getLogger("saasfw.app.messaging")


@dataclass
class Transport:
    """What the messaging part needs of a broker."""

    broker: Any
    delivery: Callable[[Any], Awaitable[None]]
    subscribe: Callable[[EventConsumer, EventHandlers], Any]
    declare: Callable[[Sequence[Any]], Awaitable[None]]
    tasks: list[asyncio.Task[None]]

    async def connect(self, subscriptions: Sequence[Any]) -> None:
        """Declare and start now; if the broker is away, keep trying in the background."""
        try:
            await asyncio.wait_for(self.declare(subscriptions), timeout=10.0)
        except Exception as exc:
            _log.warning(
                "message broker unreachable at start-up (%s): events wait in the outbox, "
                "retrying in the background",
                type(exc).__name__,
            )
            self.tasks.append(asyncio.create_task(self._retry(subscriptions)))

    async def _retry(self, subscriptions: Sequence[Any]) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(self.declare(subscriptions), timeout=10.0)
            except Exception as exc:
                _log.info("message broker still unreachable (%s)", type(exc).__name__)
                delay = min(delay * 2, 30.0)
            else:
                _log.info("message broker reachable: consuming and relaying")
                return


def _rabbit(settings: MessagingSettings) -> Transport:
    from faststream.rabbit import RabbitBroker

    from saasfw.messaging.rabbit import RabbitDelivery, RabbitTopology, subscribe_rabbit

    broker = RabbitBroker(settings.broker_url.get_secret_value(), logger=None)
    delivery = RabbitDelivery(broker, settings.destination)

    def subscribe(consumer: EventConsumer, handlers: EventHandlers) -> Any:
        topology = RabbitTopology(exchange=settings.destination, queue=handlers.queue)
        prefetch = 1 if handlers.ordered else handlers.prefetch
        return subscribe_rabbit(
            broker, consumer, topology, ordered=handlers.ordered, prefetch=prefetch
        )

    async def declare(subscriptions: Sequence[Any]) -> None:
        await broker.connect()
        await delivery.declare()
        for subscription in subscriptions:
            await subscription.declare()
        await broker.start()

    return Transport(broker, delivery, subscribe, declare, [])


def _nats(settings: MessagingSettings) -> Transport:
    from faststream.nats import NatsBroker

    from saasfw.messaging.nats import NatsDelivery, NatsTopology, subscribe_nats

    broker = NatsBroker(
        settings.broker_url.get_secret_value(), logger=None, max_reconnect_attempts=-1
    )
    stream = settings.destination.replace(".", "_")
    topology = NatsTopology(stream=stream, subject_prefix=settings.destination)
    delivery = NatsDelivery(broker, topology)

    def subscribe(consumer: EventConsumer, handlers: EventHandlers) -> Any:
        own = NatsTopology(
            stream=stream, subject_prefix=settings.destination, durable=handlers.queue
        )
        return subscribe_nats(broker, consumer, own, ordered=handlers.ordered)

    async def declare(subscriptions: Sequence[Any]) -> None:
        await broker.connect()
        await topology.declare(broker)
        for subscription in subscriptions:
            await subscription.declare()
        await broker.start()

    return Transport(broker, delivery, subscribe, declare, [])


def _memory(settings: MessagingSettings) -> Transport:
    from saasfw.messaging.memory import MemoryBus, MemoryDelivery, subscribe_memory

    bus = MemoryBus.named(settings.destination)

    def subscribe(consumer: EventConsumer, handlers: EventHandlers) -> Any:
        return subscribe_memory(bus, consumer, handlers.queue)

    async def declare(subscriptions: Sequence[Any]) -> None:
        for subscription in subscriptions:
            await subscription.start()

    return Transport(bus, MemoryDelivery(bus), subscribe, declare, [])


def transport_for(settings: MessagingSettings) -> Transport:
    """The transport ``settings.kind`` names (its extra must be installed)."""
    if settings.kind == "rabbit":
        return _rabbit(settings)
    if settings.kind == "nats":
        return _nats(settings)
    return _memory(settings)
