"""saasfw.messaging.nats: the outbox relay's delivery and the consumer on NATS JetStream.

Needs the ``[nats]`` extra. Events are published to ``<prefix>.<type>`` in one stream and
acknowledged by JetStream (``PubAck``); the outbox message id travels as ``Nats-Msg-Id``, so
a relay that publishes a message again within the stream's duplicate window is
de-duplicated by the server. A consumer is a durable pull consumer: JetStream counts
deliveries durably (``num_delivered``), failures are negatively acknowledged with a delay,
and after the consumer's limit the event is published, with its reason, to a dead-letter
stream. The consumer's ``max_deliver`` sits a few above that limit so that even an event
that crashes the process every time stops being redelivered.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

try:
    from faststream import AckPolicy
    from faststream.nats import ConsumerConfig, JStream, NatsBroker, PullSub
    from faststream.nats.annotations import NatsMessage
    from faststream.nats.subscriber.usecases import CoreSubscriber, PullStreamSubscriber
    from nats.js.api import StreamConfig
    from nats.js.errors import NotFoundError
except ImportError as exc:  # pragma: no cover - exercised by the isolation check
    from saasfw.messaging._errors import MissingExtraError

    raise MissingExtraError("nats", "nats-py") from exc

from saasfw.core.outbox import OutboxMessage
from saasfw.messaging._consumer import Ack, DeadLetter, EventConsumer, Retry
from saasfw.messaging._drain import DrainReport, InFlight
from saasfw.messaging._envelope import CONTENT_TYPE
from saasfw.messaging._errors import MessagingError

__all__ = [
    "NatsConsumer",
    "NatsDelivery",
    "NatsTopology",
    "subscribe_nats",
    "watch_max_deliveries",
]

REASON_HEADER = "Saasfw-Dead-Letter-Reason"
ERROR_HEADER = "Saasfw-Dead-Letter-Error"
ATTEMPTS_HEADER = "Saasfw-Attempts"


@dataclass(frozen=True, slots=True)
class NatsTopology:
    """The stream and subjects events use, and one consumer's durable name.

    ``stream`` holds ``<subject_prefix>.>``; dead letters of consumer ``durable`` go to
    ``<subject_prefix>_dead.<durable>`` in the stream ``<stream>_dead``.
    """

    stream: str
    subject_prefix: str
    durable: str = "events"
    duplicate_window: float = 120.0

    @property
    def dead_letter_stream(self) -> str:
        """The stream that keeps dead letters."""
        return f"{self.stream}_dead"

    @property
    def dead_letter_subject(self) -> str:
        """This consumer's dead-letter subject."""
        return f"{self.subject_prefix}_dead.{self.durable}"

    @property
    def max_deliveries_advisory(self) -> str:
        """The subject JetStream announces this consumer's exhausted ``max_deliver`` on."""
        return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.{self.durable}"

    def subject(self, event_type: str) -> str:
        """The subject an event of ``event_type`` is published to."""
        return f"{self.subject_prefix}.{event_type}"

    async def declare(self, broker: NatsBroker) -> None:
        """Create (or update) the events and dead-letter streams; needs a connected broker."""
        js = (await broker.connect()).jetstream()
        for name, subjects in (
            (self.stream, [f"{self.subject_prefix}.>"]),
            (self.dead_letter_stream, [f"{self.subject_prefix}_dead.>"]),
        ):
            config = StreamConfig(
                name=name, subjects=subjects, duplicate_window=self.duplicate_window
            )
            try:
                await js.stream_info(name)
            except NotFoundError:
                await js.add_stream(config)
            else:
                await js.update_stream(config)


class NatsDelivery:
    """The ``deliver`` callable of an ``OutboxRelay`` that publishes to JetStream.

    Returns once the stream acknowledged the message; a timeout, an unknown stream or a
    lost connection raises, so the relay keeps the message and retries it with backoff.
    """

    def __init__(self, broker: NatsBroker, topology: NatsTopology, *, timeout: float = 10.0):
        self._broker = broker
        self._topology = topology
        self._timeout = timeout

    async def __call__(self, message: OutboxMessage) -> None:
        ack = await self._broker.publish(
            message.payload.encode(),
            self._topology.subject(message.type),
            headers={
                "Nats-Msg-Id": message.message_id,
                "content-type": CONTENT_TYPE,
                "Saasfw-Ordering-Key": message.ordering_key,
            },
            stream=self._topology.stream,
            timeout=self._timeout,
        )
        if ack.stream != self._topology.stream:
            raise MessagingError(
                f"event {message.message_id} was stored in stream {ack.stream!r}, not "
                f"{self._topology.stream!r}: two streams claim its subject"
            )


class NatsConsumer:
    """An :class:`EventConsumer` on a durable JetStream pull consumer (:func:`subscribe_nats`)."""

    def __init__(
        self,
        broker: NatsBroker,
        consumer: EventConsumer,
        topology: NatsTopology,
        subject: str,
        ack_wait: float,
        ordered: bool,
    ) -> None:
        self.broker = broker
        self.consumer = consumer
        self.topology = topology
        self.subscriber: PullStreamSubscriber = broker.subscriber(
            subject,
            stream=JStream(topology.stream, declare=False),
            durable=topology.durable,
            pull_sub=PullSub(batch_size=1, timeout=5.0),
            config=ConsumerConfig(
                durable_name=topology.durable,
                max_deliver=consumer.max_attempts + 3,
                ack_wait=ack_wait,
                # One unacknowledged event at a time across every replica pulling from
                # this durable consumer: per-key order holds fleet-wide.
                max_ack_pending=1 if ordered else None,
            ),
            ack_policy=AckPolicy.MANUAL,
        )
        self.subscriber(self._on_message)
        self.advisories = watch_max_deliveries(broker, topology, consumer=consumer)
        self._inflight = InFlight()

    @property
    def in_flight(self) -> int:
        """Messages whose handler is running now."""
        return len(self._inflight)

    async def drain(self, budget: float = 10.0) -> DrainReport:
        """Stop pulling; in-flight handlers get ``budget`` seconds, the rest is nak'ed.

        Call it on shutdown (SIGTERM) before stopping the broker; JetStream redelivers
        what was handed back to another replica or after the restart.
        """
        return await self._inflight.drain(self.subscriber.stop, budget)

    async def declare(self) -> None:
        """Create the streams (idempotent); needs a connected broker."""
        await self.topology.declare(self.broker)

    async def _dead_letter(self, message: NatsMessage, outcome: DeadLetter, attempt: int) -> None:
        raw = message.raw_message
        headers = dict(raw.headers or {})
        headers.update(
            {
                REASON_HEADER: outcome.reason,
                ERROR_HEADER: outcome.error.replace("\r", " ").replace("\n", " "),
                ATTEMPTS_HEADER: str(attempt),
            }
        )
        # The dead letter keeps the original Nats-Msg-Id: parking it twice stores it once.
        await self.broker.publish(
            raw.data,
            self.topology.dead_letter_subject,
            headers=headers,
            stream=self.topology.dead_letter_stream,
        )

    async def _on_message(self, message: NatsMessage) -> None:
        if self._inflight.draining:
            await message.nack()
            return
        with self._inflight.track():
            try:
                await self._handle(message)
            except asyncio.CancelledError:
                await asyncio.shield(message.nack())
                raise

    async def _handle(self, message: NatsMessage) -> None:
        raw = message.raw_message
        attempt = int(raw.metadata.num_delivered or 1)
        outcome = await self.consumer.process(
            raw.data, attempt=attempt, queue=self.topology.durable
        )
        if isinstance(outcome, Ack):
            await message.ack()
        elif isinstance(outcome, Retry):
            await message.nack(delay=outcome.delay)
        else:
            try:
                await self._dead_letter(message, outcome, attempt)
            except Exception:
                # Not parked: let JetStream redeliver it rather than lose it.
                await message.nack(delay=self.consumer.retry_delay(attempt))
                raise
            await message.ack()


def subscribe_nats(
    broker: NatsBroker,
    consumer: EventConsumer,
    topology: NatsTopology,
    *,
    subject: str | None = None,
    ack_wait: float = 60.0,
    ordered: bool = True,
) -> NatsConsumer:
    """Subscribe ``consumer`` as the durable JetStream consumer ``topology.durable``.

    Call before the broker starts, then ``await result.declare()`` once connected (before
    the relay publishes). ``subject`` filters the stream (default: every event,
    ``<prefix>.>``). ``ack_wait`` must exceed the longest handler run. ``ordered=True``
    (the default) keeps per-key order across the fleet (``max_ack_pending=1``: one event
    in flight among all replicas); ``ordered=False`` lets replicas share the work.
    """
    filter_subject = subject or f"{topology.subject_prefix}.>"
    return NatsConsumer(broker, consumer, topology, filter_subject, ack_wait, ordered)


def watch_max_deliveries(
    broker: NatsBroker, topology: NatsTopology, *, consumer: EventConsumer | None = None
) -> CoreSubscriber:
    """Dead-letter the events JetStream gave up redelivering to ``topology.durable``.

    JetStream stops redelivering after ``max_deliver`` and only announces it (an advisory):
    without this watch such an event (one that crashed or hung the consumer every time)
    would be skipped silently. The watch copies it from the stream to the dead-letter
    stream with reason ``max-deliveries``. :func:`subscribe_nats` registers it; replicas
    share the work through a queue group, and the kept ``Nats-Msg-Id`` stores it once.
    With ``consumer`` (``subscribe_nats`` passes its own), the event is also recorded in
    the consumer's dead-letter table and counted.
    """

    async def on_advisory(message: NatsMessage) -> None:
        advisory = json.loads(message.raw_message.data)
        sequence = int(advisory["stream_seq"])
        deliveries = int(advisory.get("deliveries", 0))
        js = (await broker.connect()).jetstream()
        stored = await js.get_msg(topology.stream, sequence)
        headers = dict(stored.headers or {})
        headers.update(
            {
                REASON_HEADER: "max-deliveries",
                ERROR_HEADER: (
                    f"JetStream stopped redelivering stream sequence {sequence} after "
                    f"{deliveries} deliveries without an acknowledgement (max_deliver)"
                ),
                ATTEMPTS_HEADER: str(deliveries),
            }
        )
        await broker.publish(
            stored.data or b"",
            topology.dead_letter_subject,
            headers=headers,
            stream=topology.dead_letter_stream,
        )
        if consumer is not None:
            await consumer.record_dead_letter(
                stored.data or b"",
                reason="max-deliveries",
                error=headers[ERROR_HEADER],
                attempts=deliveries,
                queue=topology.durable,
            )

    subscriber = broker.subscriber(
        topology.max_deliveries_advisory, queue=f"{topology.durable}-max-deliveries"
    )
    subscriber(on_advisory)
    return subscriber
