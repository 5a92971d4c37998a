"""The observer port: what metrics, tracing and log context hook into, without importing them.

The consumer and the relay delivery call every observer they were given at fixed points:
around one event's processing (``consuming``, a context manager, so a span can be the
parent of the handler's own work), when its outcome is known (``consumed``), and the same
pair around one relay delivery. The base class does nothing; ``saasfw.messaging.metrics``
and ``saasfw.messaging.tracing`` subclass it behind their extras, and a service can add its
own (binding its logging's correlation id, say: :func:`bind_correlation_id`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING

from saasfw.core.outbox import OutboxMessage
from saasfw.messaging._envelope import CloudEvent

if TYPE_CHECKING:
    from saasfw.messaging._consumer import Outcome

__all__ = ["Observer", "bind_correlation_id", "observed_delivery"]

logger = logging.getLogger("saasfw.messaging")

REJECTED_TYPE = "(rejected)"
"""The type label of a message that never verified: its claimed type is not trusted."""


class Observer:
    """Hooks into consuming and relaying; every method is a no-op here."""

    def consuming(self, event: CloudEvent, attempt: int) -> AbstractContextManager[object]:
        """Entered before a verified event's handler runs, left after its outcome."""
        return nullcontext()

    def consumed(
        self, event_type: str, outcome: Outcome, attempt: int, event: CloudEvent | None
    ) -> None:
        """One delivery's outcome; ``event`` is None (and the type ``(rejected)``) when the
        message did not verify."""

    def relaying(self, message: OutboxMessage) -> AbstractContextManager[object]:
        """Entered around one relay delivery of ``message`` to the broker."""
        return nullcontext()

    def relayed(self, message: OutboxMessage, error: BaseException | None) -> None:
        """One relay delivery ended: ``error`` is None when the broker confirmed it."""


def enter_all(
    stack: ExitStack, observers: Sequence[Observer], event: CloudEvent, attempt: int
) -> None:
    """Enter every observer's ``consuming`` context on ``stack``."""
    for observer in observers:
        stack.enter_context(observer.consuming(event, attempt))


class _BindCorrelationId(Observer):
    def __init__(self, var: ContextVar[str | None]) -> None:
        self._var = var

    @contextmanager
    def _bound(self, value: str | None) -> Iterator[None]:
        token = self._var.set(value)
        try:
            yield
        finally:
            self._var.reset(token)

    def consuming(self, event: CloudEvent, attempt: int) -> AbstractContextManager[object]:
        return self._bound(event.correlationid)


def bind_correlation_id(var: ContextVar[str | None]) -> Observer:
    """An observer that sets ``var`` to the event's correlation id while it is handled.

    Pass the context variable your logging reads the correlation id from (saasfw's
    observability reads its own), so the handler's log lines carry the producer's
    correlation id as a request's would.
    """
    return _BindCorrelationId(var)


Deliver = Callable[[OutboxMessage], Awaitable[None]]


class _ObservedDelivery:
    def __init__(self, deliver: Deliver, observers: Sequence[Observer]) -> None:
        self._deliver = deliver
        self._observers = list(observers)

    async def __call__(self, message: OutboxMessage) -> None:
        with ExitStack() as stack:
            for observer in self._observers:
                stack.enter_context(observer.relaying(message))
            try:
                await self._deliver(message)
            except Exception as exc:
                self._relayed(message, exc)
                raise
            self._relayed(message, None)

    def _relayed(self, message: OutboxMessage, error: BaseException | None) -> None:
        for observer in self._observers:
            try:
                observer.relayed(message, error)
            except Exception as exc:  # an observer's bug must not fail a delivery
                logger.warning("observer %r failed: %s", observer, type(exc).__name__)


def observed_delivery(deliver: Deliver, *observers: Observer) -> Deliver:
    """Wrap a relay's delivery callable (``RabbitDelivery``, ``NatsDelivery``) with observers.

    Pass the result to ``OutboxRelay`` instead of the delivery itself: each delivery gets a
    publish span and is counted.
    """
    return _ObservedDelivery(deliver, observers)
