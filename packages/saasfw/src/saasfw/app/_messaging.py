"""Wiring saasfw.messaging: the publisher, the outbox relay, consumers, jobs and their checks.

With ``components.messaging`` on, a route publishes with the ``EventPublisher`` dependency
inside its unit of work (the event is staged in the same transaction); the relay running
in every replica's lifespan delivers staged events to the broker (``messaging.kind``:
``rabbit``, ``nats``, or ``memory``, the in-process transport for development that
production refuses). Handlers declared in :class:`EventHandlers` run each event once
(inbox), with retries and dead letters. A broker outage degrades the service (readiness
stays UP, the outbox holds the events); the scheduled cleanup jobs run once per period
across the fleet.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import MetaData, Table

from saasfw.app._effective import effective_for
from saasfw.app._inject import Provided
from saasfw.app._part import Part
from saasfw.app._ports import actor_id, tenant_id
from saasfw.app._settings import ServiceSettings
from saasfw.config import ProductionRule, RuleContext, Violation
from saasfw.core import create_missing_tables
from saasfw.core.outbox import OutboxRelay, OutboxTables, outbox_tables
from saasfw.db import Database
from saasfw.messaging import (
    EventConsumer,
    MessagingSettings,
    Publisher,
    asyncapi_document,
    asyncapi_router,
    bind_correlation_id,
    broker_check,
    dead_letter_table,
    inbox_table,
    messaging_jobs,
    messaging_production_problems,
    observed_delivery,
    relay_check,
)
from saasfw.observability import get_correlation_id
from saasfw.observability._context import correlation_id_var
from saasfw.security import ConfigurationError, public

__all__ = [
    "EventHandlers",
    "EventPublisher",
    "Messaging",
    "messaging",
    "messaging_rules",
    "wire_messaging",
]

_log = logging.getLogger("saasfw.app.messaging")

Handler = Callable[..., Awaitable[Any]]


@dataclass
class EventHandlers:
    """The handlers of one queue, declared at import time, passed to ``create_app(events=)``.

    ``queue`` names the consumer (a RabbitMQ quorum queue, a JetStream durable consumer):
    replicas of one service share it; another service uses its own. With ``ordered``
    (the default) one replica at a time consumes it, one event at a time, so one key's
    events keep their order; unordered, every replica takes up to ``prefetch`` events at
    once.
    """

    queue: str
    ordered: bool = True
    prefetch: int = 16
    handlers: list[tuple[str, type[BaseModel], Handler]] = field(default_factory=list)

    def handler(self, type: str, model: type[BaseModel]) -> Callable[[Handler], Handler]:
        """Register ``async def handler(received: Received[Model], session)`` for ``type``."""

        def register(function: Handler) -> Handler:
            self.handlers.append((type, model, function))
            return function

        return register


@dataclass
class _Tables:
    metadata: MetaData
    outbox: OutboxTables
    inbox: Table
    dead_letters: Table


def _tables(settings: MessagingSettings) -> _Tables:
    metadata = MetaData()
    return _Tables(
        metadata,
        outbox_tables(settings.outbox_table, metadata=metadata),
        inbox_table(settings.inbox_table, metadata=metadata),
        dead_letter_table(settings.dead_letter_table, metadata=metadata),
    )


class Messaging:
    """The running messaging of one service: publisher, broker, relay, consumers, jobs."""

    def __init__(
        self,
        settings: MessagingSettings,
        db: Database,
        events: Sequence[EventHandlers],
        *,
        observers: Sequence[Any] = (),
    ) -> None:
        self.settings = settings
        self.db = db
        self.events = tuple(events)
        self.tables = _tables(settings)
        self.observers = tuple(observers)
        self.publisher = Publisher(
            self.tables.outbox,
            settings.signer(),
            actor=actor_id,
            tenant=tenant_id,
            correlation_id=get_correlation_id,
            traceparent=_traceparent,
        )
        self.consumers: list[EventConsumer] = []
        self.broker: Any = None
        self.transport: Any = None
        self.relay: OutboxRelay | None = None
        self.subscriptions: list[Any] = []
        # Run by the service's one scheduler (app/_jobs.py), beside its other jobs.
        self.jobs = messaging_jobs(settings, db.engine, self.tables.outbox, self.tables.inbox)

    def _consumer(self, handlers: EventHandlers) -> EventConsumer:
        s = self.settings
        consumer = EventConsumer(
            self.db.session_factory,
            self.tables.inbox,
            s.verifier(),
            max_attempts=s.dead_letter_attempts,
            retry_backoff=s.retry_backoff,
            retry_max_backoff=s.retry_max_backoff,
            dead_letters=self.tables.dead_letters,
            observers=list(self.observers),
            name=handlers.queue,
        )
        for type_, model, function in handlers.handlers:
            consumer.handler(type_, model)(function)
        self.consumers.append(consumer)
        return consumer

    async def create_tables(self) -> None:
        """Create the outbox, inbox and dead-letter tables when missing (one replica)."""
        lock = f"saasfw-messaging:{self.settings.outbox_table}"
        await create_missing_tables(self.db.engine, lock, *self.tables.metadata.sorted_tables)

    async def start(self) -> None:
        """Subscribe the consumers, connect the broker and start the relay."""
        from saasfw.app._transports import transport_for

        transport = self.transport = transport_for(self.settings)
        self.broker = transport.broker
        for handlers in self.events:
            consumer = self._consumer(handlers)
            self.subscriptions.append(transport.subscribe(consumer, handlers))
        delivery = observed_delivery(transport.delivery, *self.observers)
        relay_options = self.settings.relay.model_dump()
        self.relay = OutboxRelay(self.tables.outbox, self.db.engine, delivery, **relay_options)
        await transport.connect(self.subscriptions)
        await self.relay.start()

    async def stop(self, budget: float) -> None:
        """Drain the consumers (in-flight handlers finish), stop the relay and the broker."""
        for task in self.transport.tasks if self.transport is not None else ():
            task.cancel()
        for subscription in self.subscriptions:
            with contextlib.suppress(Exception):
                await subscription.drain(budget=budget)
        if self.relay is not None:
            await self.relay.stop()
        if self.broker is not None and hasattr(self.broker, "stop"):
            with contextlib.suppress(Exception):
                await self.broker.stop()

    def checks(self) -> Iterator[tuple[str, Callable[[], Awaitable[None]]]]:
        """The broker and relay checks (non-critical: a broker outage only degrades)."""

        async def broker() -> None:
            if self.broker is not None and hasattr(self.broker, "ping"):
                await broker_check(self.broker)()

        async def relay() -> None:
            if self.relay is not None:
                await relay_check(self.relay)()

        yield "broker", broker
        yield "outbox_relay", relay


def _traceparent() -> str | None:
    from saasfw.messaging.tracing import current_traceparent

    return current_traceparent()


messaging: Provided[Messaging] = Provided("messaging")
"""The service's running :class:`Messaging` (lifespan singleton)."""


def _publisher(runtime: Annotated[Messaging, Depends(messaging)]) -> Publisher:
    return runtime.publisher


EventPublisher = Annotated[Publisher, Depends(_publisher)]
"""``await publisher.publish(session, CloudEvent.create(type, data), key=...)`` in the unit
of work: the event is committed with the change, or not at all."""


# One set of messaging metrics per registry: two apps in one process (the development
# pair) share the global registry, where a second set would collide.
_METRICS: dict[int, Any] = {}


def _observers(registry: Any, tracer_provider: Any) -> list[Any]:
    # Handler log lines carry the producing request's correlation id, as a request's do.
    found: list[Any] = [bind_correlation_id(correlation_id_var)]
    if registry is not None:
        from saasfw.messaging.metrics import MessagingMetrics

        metrics = _METRICS.get(id(registry))
        if metrics is None:
            metrics = _METRICS[id(registry)] = MessagingMetrics(registry)
        found.append(metrics)
    from saasfw.messaging.tracing import MessagingTracing

    found.append(MessagingTracing(tracer_provider))
    return found


def wire_messaging(
    settings: ServiceSettings,
    db: Database | None,
    *,
    events: Sequence[EventHandlers] = (),
    metrics_registry: Any = None,
    tracer_provider: Any = None,
) -> Part[Messaging] | None:
    """Messaging as a part (None unless ``components.messaging`` is on)."""
    if not settings.components.messaging:
        return None
    if db is None:
        raise ConfigurationError(
            "components.messaging needs the database: the outbox and the inbox live there"
        )
    observers = _observers(metrics_registry, tracer_provider)
    runtime = Messaging(settings.messaging, db, events, observers=observers)
    budget = settings.k8s.lifecycle.drain_timeout_seconds

    def document() -> dict[str, Any]:
        return asyncapi_document(
            title=settings.service,
            version=settings.version,
            settings=settings.messaging,
            publishes=runtime.publisher.declared,
            consumes={t: m for group in events for t, m, _ in group.handlers},
        )

    # Public like /openapi.json: the shapes of the events, never the broker's credentials.
    asyncapi = APIRouter(dependencies=[Depends(public)])
    asyncapi.include_router(asyncapi_router(document))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.create_tables()
        await runtime.start()
        async with AsyncExitStack() as stack:
            for observer in observers:
                watch = getattr(observer, "watch_outbox", None)
                if watch is not None:
                    await stack.enter_async_context(watch(runtime.tables.outbox, db.engine))
            yield
        await runtime.stop(budget)

    return Part(
        "messaging",
        runtime,
        provides=((messaging, runtime),),
        lifespan=lifespan,
        budget=budget + 5.0,
        routers=(asyncapi,),
        degrading_checks=tuple((name, check, None) for name, check in runtime.checks()),
    )


def _rule(raw: Any, context: RuleContext) -> Iterator[Violation]:
    effective = effective_for(raw, context)
    if effective is None or not effective.components.messaging:
        return
    for message in messaging_production_problems(effective.messaging):
        yield Violation("messaging", message, "messaging")


def messaging_rules() -> list[ProductionRule]:
    """saasfw.messaging's production checks (signing keys, broker URL, the memory transport)."""
    return [
        ProductionRule(
            "messaging",
            _rule,
            description="events are signed, the broker is real and its URL safe",
        )
    ]
