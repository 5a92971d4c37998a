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
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from saasfw.messaging._deadletters import record_dead_letter
from saasfw.messaging._envelope import CloudEvent, parse_event
from saasfw.messaging._errors import EventRejected, SignatureError
from saasfw.messaging._inbox import record_once
from saasfw.messaging._observe import REJECTED_TYPE, Observer, enter_all
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
        dead_letters: the dead-letter table (:func:`dead_letter_table`); every dead letter
            is recorded there with its reason, for the ``saasfw-messaging dead-letters``
            command. Without it they are only in the broker's dead-letter destination.
        observers: metrics, tracing and log-context hooks (:class:`Observer`).
        name: this consumer in dead-letter records when the broker adapter names none.
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
        dead_letters: Table | None = None,
        observers: Sequence[Observer] = (),
        name: str = "events",
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
        self.dead_letters = dead_letters
        self.observers = list(observers)
        self.name = name

    @property
    def handled(self) -> dict[str, type[BaseModel]]:
        """Event type -> payload model of every handler (the AsyncAPI document reads it)."""
        return {type: model for type, (model, _) in sorted(self._handlers.items())}

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

    async def process(self, body: bytes, *, attempt: int, queue: str | None = None) -> Outcome:
        """Handle one delivery of ``body`` (``attempt`` counts from 1) and say what to do.

        ``queue`` names where it came from (the RabbitMQ queue, the JetStream durable) in
        the dead-letter table; it defaults to the consumer's ``name``.
        """
        where = queue or self.name
        try:
            received, handler = self._admit(body, attempt)
        except EventRejected as exc:
            parked = DeadLetter(reason=exc.reason, error=str(exc))
            logger.warning("dead-lettering a message from %s: %s", where, exc)
            outcome = await self._park(body, _claimed(body), parked, attempt, where, verified=False)
            self._report(REJECTED_TYPE, outcome, attempt, None)
            return outcome
        event = received.event
        token = _current.set(event)
        try:
            with ExitStack() as stack:
                enter_all(stack, self.observers, event, attempt)
                outcome = await self._run(received, handler)
                if isinstance(outcome, DeadLetter):
                    outcome = await self._park(body, event, outcome, attempt, where, verified=True)
                self._report(event.type, outcome, attempt, event)
        finally:
            _current.reset(token)
        return outcome

    async def _run(self, received: Received[Any], handler: Handler) -> Outcome:
        """Run the handler once, in a transaction with the inbox row; decide what follows."""
        event, attempt = received.event, received.attempt
        log = {"event_id": event.id, "correlation_id": event.correlationid}
        try:
            async with self.sessions() as session, session.begin():
                if not await record_once(session, self.inbox, event):
                    return Ack(duplicate=True)
                if attempt > self.max_attempts:
                    raise _Exhausted  # rolls the inbox row back; the handler does not run
                await handler(received, session)
        except _Exhausted:
            # Failures are dead-lettered at max_attempts, so later deliveries are ones that
            # never reached an outcome: the consumer crashed, hung or was stopped each time.
            error = (
                f"delivered {attempt} times without an outcome (the consumer crashed, hung or "
                f"was stopped each time); max_attempts is {self.max_attempts}"
            )
            logger.error("event %s (%s): %s", event.id, event.type, error, extra=log)
            return DeadLetter(reason="max-deliveries", error=error)
        except Exception as exc:
            error = _describe(exc)
            if attempt >= self.max_attempts:
                logger.error(
                    "event %s (%s) failed %s times, dead-lettering: %s",
                    event.id,
                    event.type,
                    attempt,
                    error,
                    extra=log,
                )
                return DeadLetter(reason="handler-failed", error=error)
            delay = self.retry_delay(attempt)
            logger.warning(
                "event %s (%s) failed on attempt %s, retrying in %.1fs: %s",
                event.id,
                event.type,
                attempt,
                delay,
                error,
                extra=log,
            )
            return Retry(delay=delay, error=error)
        return Ack()

    async def _park(
        self,
        body: bytes,
        event: CloudEvent | None,
        outcome: DeadLetter,
        attempt: int,
        where: str,
        *,
        verified: bool,
    ) -> Outcome:
        """Record the dead letter in the table; if that fails, retry rather than lose it.

        A message that did not verify is keyed by its body's hash, not the id it claims,
        so a forgery can never overwrite the record of a genuine event.
        """
        if self.dead_letters is None:
            return outcome
        try:
            async with self.sessions() as session, session.begin():
                await record_dead_letter(
                    await session.connection(),
                    self.dead_letters,
                    consumer=where,
                    body=body,
                    event=event,
                    reason=outcome.reason,
                    error=outcome.error,
                    attempts=attempt,
                    key_by_body=not verified,
                )
        except Exception as exc:
            error = f"the dead letter could not be recorded: {_describe(exc)}"
            logger.error("%s; the message goes back to the broker", error)
            return Retry(delay=self.retry_delay(attempt), error=error)
        return outcome

    async def record_dead_letter(
        self, body: bytes, *, reason: str, error: str, attempts: int, queue: str | None = None
    ) -> bool:
        """Record a message the broker dead-lettered itself (JetStream's ``max_deliver``).

        Counted like the consumer's own dead letters (under its verified type, else
        ``(rejected)``); returns False when the row could not be written (logged).
        """
        claimed = _claimed(body)
        verified: CloudEvent | None = None
        if claimed is not None:
            try:
                verified = self.verifier.verify(claimed)
            except SignatureError:
                verified = None
        outcome = await self._park(
            body,
            claimed,
            DeadLetter(reason=reason, error=error),
            attempts,
            queue or self.name,
            verified=verified is not None,
        )
        self._report(verified.type if verified else REJECTED_TYPE, outcome, attempts, verified)
        return isinstance(outcome, DeadLetter)

    def _report(
        self, event_type: str, outcome: Outcome, attempt: int, event: CloudEvent | None
    ) -> None:
        if isinstance(outcome, Ack):
            if outcome.duplicate:
                self.stats.duplicates += 1
            else:
                self.stats.processed += 1
        elif isinstance(outcome, Retry):
            self.stats.retried += 1
        else:
            self.stats.dead_lettered += 1
        for observer in self.observers:
            try:
                observer.consumed(event_type, outcome, attempt, event)
            except Exception as exc:  # a metrics bug must not change what happens to the event
                logger.warning("observer %r failed: %s", observer, _describe(exc))


class _Exhausted(Exception):
    """An event delivered more often than ``max_attempts`` without an outcome."""


def _claimed(body: bytes) -> CloudEvent | None:
    """The envelope as it claims to be, for the dead-letter record of a rejected message."""
    try:
        return parse_event(body)
    except EventRejected:
        return None
