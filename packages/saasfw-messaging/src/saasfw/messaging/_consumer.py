"""The broker-independent consumer: verify, deduplicate, run the handler once, decide.

Each message goes through the same steps whichever broker brought it: parse the
envelope, verify its signature (an event that does not verify is dead-lettered at once and
its actor and tenant never reach a handler), find the handler for its type, validate the
payload, then run the handler inside a transaction that also writes the inbox row. The
result is an :data:`Outcome` that the broker adapter carries out: acknowledge, retry after
a delay, or dead-letter with a reason.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from saasfw.messaging._envelope import CloudEvent, parse_event
from saasfw.messaging._errors import EventRejected, SignatureError
from saasfw.messaging._inbox import record_once
from saasfw.messaging._signing import EventVerifier

__all__ = [
    "Ack",
    "ConsumerStats",
    "DeadLetter",
    "EventConsumer",
    "Outcome",
    "Received",
    "Retry",
    "current_event",
]

logger = logging.getLogger("saasfw.messaging")

ModelT = TypeVar("ModelT", bound=BaseModel)

_current: ContextVar[CloudEvent | None] = ContextVar("saasfw_messaging_event", default=None)


def current_event() -> CloudEvent | None:
    """The verified event whose handler is running, else None.

    A port for the other concerns: logging and audit read the correlation id, trace
    parent, actor and tenant of the event being handled from here (``saasfw.app`` wires
    it), exactly as they read a request's.
    """
    return _current.get()


@dataclass(frozen=True, slots=True)
class Received(Generic[ModelT]):
    """What a handler gets: the verified envelope, its validated payload, the attempt."""

    event: CloudEvent
    data: ModelT
    attempt: int


Handler = Callable[[Received[Any], AsyncSession], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Ack:
    """Processed (or processed before, when ``duplicate``): acknowledge."""

    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    """The handler failed and attempts remain: redeliver after ``delay`` seconds."""

    delay: float
    error: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Give up: ``reason`` is a short word, ``error`` the detail a person reads."""

    reason: str
    error: str


Outcome = Ack | Retry | DeadLetter


@dataclass(slots=True)
class ConsumerStats:
    """Counts for metrics: processed, duplicates skipped, retries, dead letters."""

    processed: int = 0
    duplicates: int = 0
    retried: int = 0
    dead_lettered: int = 0


def _describe(exc: BaseException) -> str:
    """The exception's type and first line: SQLAlchemy and driver errors put the statement
    and its parameters (customer data) on later lines, which must not reach a dead letter."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


class EventConsumer:
    """Run handlers for verified events exactly once per event id.

    Args:
        sessions: the service's session factory; each event gets its own transaction.
        inbox: the inbox table (:func:`inbox_table`), in the same database as the effects.
        verifier: the verification keys of every source consumed from.
        max_attempts: after this many failed deliveries an event is dead-lettered.
        retry_backoff: the first retry delay in seconds; it doubles per attempt.
        retry_max_backoff: the ceiling of the retry delay.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        inbox: Table,
        verifier: EventVerifier,
        *,
        max_attempts: int = 5,
        retry_backoff: float = 1.0,
        retry_max_backoff: float = 60.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.sessions = sessions
        self.inbox = inbox
        self.verifier = verifier
        self.max_attempts = max_attempts
        self.stats = ConsumerStats()
        self._backoff = retry_backoff
        self._max_backoff = retry_max_backoff
        self._handlers: dict[str, tuple[type[BaseModel], Handler]] = {}

    @property
    def event_types(self) -> list[str]:
        """The types a handler is registered for (brokers bind to these)."""
        return sorted(self._handlers)

    def add_handler(
        self,
        type: str,
        model: type[ModelT],
        handler: Callable[[Received[ModelT], AsyncSession], Awaitable[None]],
    ) -> None:
        """Run ``handler`` for events of ``type`` whose payload validates as ``model``."""
        if type in self._handlers:
            raise ValueError(f"a handler for event type {type!r} is already registered")
        self._handlers[type] = (model, handler)

    def handler(
        self, type: str, model: type[ModelT]
    ) -> Callable[
        [Callable[[Received[ModelT], AsyncSession], Awaitable[None]]],
        Callable[[Received[ModelT], AsyncSession], Awaitable[None]],
    ]:
        """Decorator form of :meth:`add_handler`."""

        def register(
            func: Callable[[Received[ModelT], AsyncSession], Awaitable[None]],
        ) -> Callable[[Received[ModelT], AsyncSession], Awaitable[None]]:
            self.add_handler(type, model, func)
            return func

        return register

    def retry_delay(self, attempt: int) -> float:
        """Capped exponential backoff with jitter for the retry after ``attempt``."""
        delay = min(self._max_backoff, self._backoff * 2.0 ** min(attempt - 1, 20))
        return delay * random.uniform(0.8, 1.0)  # noqa: S311  # nosec B311 - jitter, not a secret

    def _admit(self, body: bytes, attempt: int) -> tuple[Received[Any], Handler]:
        event = parse_event(body)
        try:
            self.verifier.verify(event)
        except SignatureError as exc:
            raise EventRejected(str(exc), reason=f"signature-{exc.reason}") from None
        registered = self._handlers.get(event.type)
        if registered is None:
            raise EventRejected(
                f"no handler for event type {event.type!r} (event {event.id})",
                reason="no-handler",
            )
        model, handler = registered
        try:
            data = model.model_validate(event.data)
        except ValidationError as exc:
            raise EventRejected(
                f"event {event.id}: the payload is not a valid {model.__name__}: "
                f"{exc.error_count()} error(s), first at {exc.errors()[0]['loc']}",
                reason="invalid-payload",
            ) from None
        return Received(event=event, data=data, attempt=attempt), handler

    async def process(self, body: bytes, *, attempt: int) -> Outcome:
        """Handle one delivery of ``body`` (``attempt`` counts from 1) and say what to do."""
        try:
            received, handler = self._admit(body, attempt)
        except EventRejected as exc:
            self.stats.dead_lettered += 1
            logger.warning("dead-lettering a message: %s", exc)
            return DeadLetter(reason=exc.reason, error=str(exc))
        event = received.event
        try:
            async with self.sessions() as session, session.begin():
                if not await record_once(session, self.inbox, event):
                    self.stats.duplicates += 1
                    return Ack(duplicate=True)
                token = _current.set(event)
                try:
                    await handler(received, session)
                finally:
                    _current.reset(token)
        except Exception as exc:
            error = _describe(exc)
            if attempt >= self.max_attempts:
                self.stats.dead_lettered += 1
                logger.error(
                    "event %s (%s) failed %s times, dead-lettering: %s",
                    event.id,
                    event.type,
                    attempt,
                    error,
                )
                return DeadLetter(reason="handler-failed", error=error)
            self.stats.retried += 1
            delay = self.retry_delay(attempt)
            logger.warning(
                "event %s (%s) failed on attempt %s, retrying in %.1fs: %s",
                event.id,
                event.type,
                attempt,
                delay,
                error,
            )
            return Retry(delay=delay, error=error)
        self.stats.processed += 1
        return Ack()
