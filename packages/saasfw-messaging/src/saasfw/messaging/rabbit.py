"""saasfw.messaging.rabbit: the outbox relay's delivery and the consumer on RabbitMQ.

Needs the ``[rabbit]`` extra. Events go to a durable topic exchange, routed by their type.
A consumer's queue is a quorum queue: its ``x-delivery-count`` header counts deliveries
durably (across consumer crashes and replicas), which decides when a failing event is
dead-lettered, with its reason, to ``<queue>.dead`` through the ``<queue>.dlx`` exchange.
The queue's ``x-delivery-limit`` (a few above the consumer's own limit) makes the broker
dead-letter even an event that crashes the consumer process every time.

The events exchange has an alternate exchange: an event no queue is bound for yet (a new
type nobody consumes) is kept in ``<exchange>.unrouted`` instead of being dropped or
holding back the later events of its key in the outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

try:
    import aio_pika
    import aiormq.abc
    from faststream import AckPolicy
    from faststream.rabbit import (
        ExchangeType,
        RabbitBroker,
        RabbitExchange,
        RabbitQueue,
    )
    from faststream.rabbit.annotations import RabbitMessage
    from faststream.rabbit.schemas import Channel, QueueType
    from faststream.rabbit.subscriber import RabbitSubscriber
except ImportError as exc:  # pragma: no cover - exercised by the isolation check
    from saasfw.messaging._errors import MissingExtraError

    raise MissingExtraError("rabbit", "aio-pika") from exc

from saasfw.core.outbox import OutboxMessage
from saasfw.messaging._consumer import Ack, DeadLetter, EventConsumer, Retry
from saasfw.messaging._deadletters import REPLAY_HEADER
from saasfw.messaging._drain import DrainReport, InFlight
from saasfw.messaging._envelope import CONTENT_TYPE
from saasfw.messaging._errors import MessagingError

__all__ = ["RabbitConsumer", "RabbitDelivery", "RabbitTopology", "subscribe_rabbit"]

REASON_HEADER = "x-saasfw-dead-letter-reason"
ERROR_HEADER = "x-saasfw-dead-letter-error"
ATTEMPTS_HEADER = "x-saasfw-attempts"


def _unrouted(exchange: str) -> str:
    return f"{exchange}.unrouted"


def _events_exchange(name: str) -> RabbitExchange:
    # Every declaration of the exchange must carry the same arguments (RabbitMQ refuses
    # a redeclaration that differs), FastStream's subscriber start included.
    return RabbitExchange(
        name,
        type=ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": _unrouted(name)},
    )


async def _declare_events_exchange(
    channel: aio_pika.abc.AbstractChannel, name: str
) -> aio_pika.abc.AbstractExchange:
    """The events exchange with its alternate exchange and the queue keeping unrouted events."""
    unrouted = await channel.declare_exchange(
        _unrouted(name), aio_pika.ExchangeType.FANOUT, durable=True
    )
    keep = await channel.declare_queue(
        _unrouted(name), durable=True, arguments={"x-queue-type": "quorum"}
    )
    await keep.bind(unrouted)
    return await channel.declare_exchange(
        name,
        aio_pika.ExchangeType.TOPIC,
        durable=True,
        arguments={"alternate-exchange": _unrouted(name)},
    )


class RabbitDelivery:
    """The ``deliver`` callable of an ``OutboxRelay`` that publishes to RabbitMQ.

    Each message is published persistent and mandatory to ``exchange`` with the event type
    as routing key, and the call returns only once the broker confirmed it (publisher
    confirms). A nack, an unroutable message (no queue bound yet) or a lost connection
    raises, so the relay keeps the message and retries it with backoff.
    """

    def __init__(self, broker: RabbitBroker, exchange: str, *, timeout: float = 10.0) -> None:
        self._broker = broker
        self._exchange = _events_exchange(exchange)
        self._timeout = timeout

    async def declare(self) -> None:
        """Declare the events exchange and its unrouted-events queue (idempotent)."""
        async with (await self._broker.connect()).channel() as channel:
            await _declare_events_exchange(channel, self._exchange.name)

    async def __call__(self, message: OutboxMessage) -> None:
        # A replayed dead letter goes back to the one queue that gave up on it (through
        # the default exchange), not to every queue bound for its type.
        replay_to = message.headers.get(REPLAY_HEADER)
        result = await self._broker.publish(
            message.payload.encode(),
            exchange=None if replay_to else self._exchange,
            routing_key=replay_to or message.type,
            persist=True,
            mandatory=True,
            timeout=self._timeout,
            message_id=message.message_id,
            content_type=CONTENT_TYPE,
            message_type=message.type,
            headers={"x-saasfw-ordering-key": message.ordering_key},
        )
        if result is None:
            raise MessagingError(
                "RabbitMQ did not confirm the publication: open the broker's channel with "
                "publisher_confirms=True (FastStream's default)"
            )
        if isinstance(result, aiormq.abc.DeliveredMessage):
            if replay_to:
                raise MessagingError(
                    f"RabbitMQ returned replayed event {message.message_id}: the queue "
                    f"{replay_to!r} does not exist (declare its consumer first)"
                )
            raise MessagingError(
                f"RabbitMQ returned event {message.message_id} ({message.type}) as unroutable "
                f"from exchange {self._exchange.name!r}: declare the exchange with "
                "RabbitDelivery.declare() so unrouted events are kept, or bind a queue"
            )


@dataclass(frozen=True, slots=True)
class RabbitTopology:
    """The names one consumer uses: events exchange, its queue, and its dead letters."""

    exchange: str
    queue: str

    @property
    def dead_letter_exchange(self) -> str:
        """The direct exchange dead letters go through."""
        return f"{self.queue}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        """The quorum queue that keeps dead letters until someone looks at them."""
        return f"{self.queue}.dead"


def _delivery_count(headers: Mapping[str, object] | None) -> int:
    """Earlier deliveries of this message, as the quorum queue counted them."""
    value = (headers or {}).get("x-delivery-count")
    return value if isinstance(value, int) and value >= 0 else 0


class RabbitConsumer:
    """An :class:`EventConsumer` subscribed to a quorum queue (see :func:`subscribe_rabbit`)."""

    def __init__(
        self,
        broker: RabbitBroker,
        consumer: EventConsumer,
        topology: RabbitTopology,
        bindings: list[str],
        prefetch: int,
        ordered: bool,
    ) -> None:
        self.broker = broker
        self.consumer = consumer
        self.topology = topology
        self.bindings = bindings
        self._exchange = _events_exchange(topology.exchange)
        self._dlx = RabbitExchange(
            topology.dead_letter_exchange, type=ExchangeType.DIRECT, durable=True
        )
        self._dead = RabbitQueue(
            topology.dead_letter_queue,
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key=topology.queue,
        )
        self._queue = RabbitQueue(
            topology.queue,
            queue_type=QueueType.QUORUM,
            durable=True,
            routing_key=bindings[0],
            arguments={
                "x-dead-letter-exchange": topology.dead_letter_exchange,
                "x-dead-letter-routing-key": topology.queue,
                "x-delivery-limit": consumer.max_attempts + 3,
                # One replica at a time consumes the queue; the others stand by and take
                # over when it goes away. Without it, replicas share the queue and one
                # key's events run concurrently, out of order.
                "x-single-active-consumer": ordered,
            },
        )
        self.subscriber: RabbitSubscriber = broker.subscriber(
            self._queue,
            self._exchange,
            ack_policy=AckPolicy.MANUAL,
            channel=Channel(prefetch_count=prefetch),
        )
        self.subscriber(self._on_message)
        self._inflight = InFlight()

    @property
    def in_flight(self) -> int:
        """Messages whose handler is running now."""
        return len(self._inflight)

    async def drain(self, budget: float = 10.0) -> DrainReport:
        """Stop consuming; in-flight handlers get ``budget`` seconds, the rest is requeued.

        Call it on shutdown (SIGTERM) before stopping the broker: messages already
        prefetched but not started go back to the queue when the channel closes (stop the
        broker right after), handlers still running
        after ``budget`` are cancelled (their transaction rolls back) and their message
        is requeued for the next consumer.
        """
        return await self._inflight.drain(self.subscriber.stop, budget)

    async def declare(self) -> None:
        """Declare exchanges, queues and every binding (idempotent; needs a connected broker).

        Run it at deploy or start-up, before the relay publishes (events published before
        the queue is bound wait in ``<exchange>.unrouted``). It uses a channel of its own:
        FastStream caches a declared queue with the channel it was declared on, and the
        subscriber must consume on its own (prefetch-limited) channel.
        """
        connection = await self.broker.connect()
        topology = self.topology
        async with connection.channel() as channel:
            exchange = await _declare_events_exchange(channel, topology.exchange)
            queue = await channel.declare_queue(
                topology.queue, durable=True, arguments=self._queue.arguments
            )
            for key in self.bindings:
                await queue.bind(exchange, routing_key=key)
            dlx = await channel.declare_exchange(
                topology.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
            )
            dead = await channel.declare_queue(
                topology.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dead.bind(dlx, routing_key=topology.queue)

    async def _dead_letter(self, message: RabbitMessage, outcome: DeadLetter, attempt: int) -> None:
        raw = message.raw_message
        headers = dict(raw.headers or {})
        headers.update(
            {REASON_HEADER: outcome.reason, ERROR_HEADER: outcome.error, ATTEMPTS_HEADER: attempt}
        )
        result = await self.broker.publish(
            raw.body,
            exchange=self._dlx,
            routing_key=self.topology.queue,
            persist=True,
            mandatory=True,
            message_id=raw.message_id,
            content_type=raw.content_type,
            message_type=raw.type,
            headers=headers,
        )
        if result is None or isinstance(result, aiormq.abc.DeliveredMessage):
            raise MessagingError(
                f"the dead letter for {raw.message_id} was not confirmed by RabbitMQ; "
                f"is {self.topology.dead_letter_queue!r} declared (RabbitConsumer.declare)?"
            )

    async def _on_message(self, message: RabbitMessage) -> None:
        if self._inflight.draining:
            # Left unacknowledged: the broker sends no more than the prefetch, and takes
            # it back when the channel closes (a requeue now would come straight back).
            return
        with self._inflight.track():
            try:
                await self._handle(message)
            except asyncio.CancelledError:
                # Drained past its budget: hand the message back for the next consumer.
                await asyncio.shield(message.nack(requeue=True))
                raise

    async def _handle(self, message: RabbitMessage) -> None:
        raw = message.raw_message
        attempt = _delivery_count(raw.headers) + 1
        outcome = await self.consumer.process(raw.body, attempt=attempt, queue=self.topology.queue)
        if isinstance(outcome, Ack):
            await message.ack()
        elif isinstance(outcome, Retry):
            # The quorum queue counts the requeue; holding the message for the delay
            # (instead of requeueing at once) is what spaces the attempts.
            await asyncio.sleep(outcome.delay)
            await message.nack(requeue=True)
        else:
            try:
                await self._dead_letter(message, outcome, attempt)
            except Exception:
                # Not parked: leave it with the queue so it is not lost.
                await message.nack(requeue=True)
                raise
            await message.ack()


def subscribe_rabbit(
    broker: RabbitBroker,
    consumer: EventConsumer,
    topology: RabbitTopology,
    *,
    bindings: list[str] | None = None,
    ordered: bool = True,
    prefetch: int = 1,
) -> RabbitConsumer:
    """Subscribe ``consumer`` to the topology's quorum queue on ``broker``.

    Call before the broker starts, then ``await result.declare()`` once connected.
    ``bindings`` are routing-key patterns (default: the consumer's event types).
    ``ordered=True`` (the default) keeps per-key order across the fleet: the queue has a
    single active consumer and it takes one event at a time (``prefetch`` must be 1).
    With ``ordered=False`` replicas share the queue and ``prefetch`` events each, for
    throughput where order does not matter. A queue's ``ordered`` cannot change once
    declared (RabbitMQ refuses other arguments): use a new queue name.
    """
    keys = bindings if bindings is not None else consumer.event_types
    if not keys:
        raise ValueError("subscribe_rabbit: register handlers (or pass bindings) first")
    if prefetch < 1 or (ordered and prefetch != 1):
        raise ValueError(
            f"subscribe_rabbit: prefetch={prefetch} is invalid; an ordered consumer takes one "
            "event at a time (prefetch=1), an unordered one at least 1"
        )
    return RabbitConsumer(broker, consumer, topology, list(keys), prefetch, ordered)
