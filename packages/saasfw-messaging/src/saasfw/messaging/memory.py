"""The in-process transport: events between services in one Python process, no broker.

For development and tests on a machine with only Python: the relay's delivery puts each
event on the queues bound to its type, and each queue's consumer runs it through the same
:class:`~saasfw.messaging.EventConsumer` (inbox, retries with backoff, dead letters) as on
a broker. Nothing survives the process: an event delivered to a queue whose consumer had
not run it yet is gone when the process stops. Production refuses it
(``messaging_production_problems``: ``kind`` ``memory``).

Buses are named (the settings' ``destination``): every service in the process that names
the same bus shares it, which is how two example services run in one development process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from saasfw.core.outbox import OutboxMessage
from saasfw.messaging._consumer import Ack, EventConsumer, Retry
from saasfw.messaging._deadletters import REPLAY_HEADER
from saasfw.messaging._drain import DrainReport, InFlight

__all__ = ["MemoryBus", "MemoryConsumer", "MemoryDelivery", "subscribe_memory"]

_log = logging.getLogger("saasfw.messaging.memory")


@dataclass(slots=True)
class _Queue:
    name: str
    bindings: set[str]
    items: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    dead: list[bytes] = field(default_factory=list)


class MemoryBus:
    """One process's exchange: queues, each bound to event types."""

    _named: ClassVar[dict[str, MemoryBus]] = {}

    def __init__(self, name: str) -> None:
        self.name = name
        self._queues: dict[str, _Queue] = {}

    @classmethod
    def named(cls, name: str) -> MemoryBus:
        """The process's bus of this name (made on first use)."""
        bus = cls._named.get(name)
        if bus is None:
            bus = cls._named[name] = MemoryBus(name)
        return bus

    def queue(self, name: str, bindings: Sequence[str]) -> _Queue:
        """The queue ``name``, bound to ``bindings`` too (idempotent)."""
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue(name, set(bindings))
        queue.bindings.update(bindings)
        return queue

    def dead_letters(self, queue: str) -> list[bytes]:
        """The bodies a queue's consumer gave up on, oldest first."""
        found = self._queues.get(queue)
        return list(found.dead) if found is not None else []

    def put(self, message: OutboxMessage) -> int:
        """Queue ``message`` on every queue bound to its type; how many took it."""
        body = message.payload.encode()
        replay_to = message.headers.get(REPLAY_HEADER)
        taken = 0
        for queue in self._queues.values():
            wanted = queue.name == replay_to if replay_to else message.type in queue.bindings
            if wanted:
                queue.items.put_nowait(body)
                taken += 1
        return taken


class MemoryDelivery:
    """The ``deliver`` callable of an ``OutboxRelay`` that puts events on a :class:`MemoryBus`.

    An event no queue is bound to is kept nowhere (as a broker without a bound queue would
    drop it); it is logged at debug level.
    """

    def __init__(self, bus: MemoryBus) -> None:
        self.bus = bus

    async def __call__(self, message: OutboxMessage) -> None:
        if not self.bus.put(message):
            _log.debug("no queue on bus %s takes %s", self.bus.name, message.type)


class MemoryConsumer:
    """One queue's consumer task: events in arrival order, one at a time (per-key order)."""

    def __init__(self, bus: MemoryBus, consumer: EventConsumer, queue: str) -> None:
        self.bus = bus
        self.consumer = consumer
        self.queue = bus.queue(queue, consumer.event_types)
        self._inflight = InFlight()
        self._task: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        """Events whose handler is running now."""
        return len(self._inflight)

    async def start(self) -> None:
        """Start consuming (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"memory-consumer:{self.queue.name}")

    async def _run(self) -> None:
        while not self._inflight.draining:
            body = await self.queue.items.get()
            with self._inflight.track():
                await self._handle(body)

    async def _handle(self, body: bytes) -> None:
        attempt = 1
        while True:
            outcome = await self.consumer.process(body, attempt=attempt, queue=self.queue.name)
            if isinstance(outcome, Ack):
                return
            if isinstance(outcome, Retry):
                await asyncio.sleep(outcome.delay)
                attempt += 1
                continue
            self.queue.dead.append(body)
            _log.warning("dead letter on %s: %s", self.queue.name, outcome.reason)
            return

    async def _stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def drain(self, budget: float = 10.0) -> DrainReport:
        """Stop taking events; the running handler gets ``budget`` seconds."""
        return await self._inflight.drain(self._stop, budget)


def subscribe_memory(bus: MemoryBus, consumer: EventConsumer, queue: str) -> MemoryConsumer:
    """Bind ``queue`` on ``bus`` to the consumer's event types; ``await start()`` it."""
    if not consumer.event_types:
        raise ValueError("subscribe_memory: register handlers first")
    return MemoryConsumer(bus, consumer, queue)
