"""saasfw.messaging.tracing: one span per relay delivery and per consumed event, W3C-linked.

Needs ``opentelemetry-api``. The publisher stamps the producing request's W3C
``traceparent`` into the envelope (:func:`current_traceparent` is the port); the relay's
publish span and the consumer's process span both start from it, so the consumer's span
is a child of the request's trace, and the handler's own spans are children of it. With
no tracer provider passed, the spans are no-ops.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager

try:
    from opentelemetry.context import Context
    from opentelemetry.trace import (
        NoOpTracerProvider,
        SpanKind,
        Status,
        StatusCode,
        TracerProvider,
        get_current_span,
    )
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - exercised by the isolation check
    from saasfw.messaging._errors import MissingExtraError

    raise MissingExtraError("otel", "opentelemetry-api", purpose="its spans") from exc

from saasfw.core.outbox import OutboxMessage
from saasfw.messaging._consumer import Ack, DeadLetter, Outcome
from saasfw.messaging._envelope import CloudEvent
from saasfw.messaging._observe import Observer
from saasfw.messaging._version import __version__

__all__ = ["MessagingTracing", "current_traceparent"]

_W3C = TraceContextTextMapPropagator()


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, or None (the Publisher's port)."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def _parent(traceparent: str | None) -> Context | None:
    return _W3C.extract({"traceparent": traceparent}) if traceparent else None


class MessagingTracing(Observer):
    """Spans for consuming and relaying (``observers=[tracing]``, ``observed_delivery``)."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        provider = tracer_provider if tracer_provider is not None else NoOpTracerProvider()
        self._tracer = provider.get_tracer("saasfw.messaging", __version__)

    def consuming(self, event: CloudEvent, attempt: int) -> AbstractContextManager[object]:
        return self._tracer.start_as_current_span(
            f"{event.type} process",
            context=_parent(event.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.operation.type": "process",
                "messaging.message.id": event.id,
                "messaging.message.delivery_attempt": attempt,
                "cloudevents.event_id": event.id,
                "cloudevents.event_type": event.type,
                "cloudevents.event_source": event.source,
                "saasfw.correlation_id": event.correlationid or "",
            },
        )

    def consumed(
        self, event_type: str, outcome: Outcome, attempt: int, event: CloudEvent | None
    ) -> None:
        if event is None:
            return  # no span was started for a message that did not verify
        span = get_current_span()
        span.set_attribute("saasfw.outcome", type(outcome).__name__.lower())
        if isinstance(outcome, Ack):
            span.set_attribute("saasfw.duplicate", outcome.duplicate)
            return
        detail = outcome.reason if isinstance(outcome, DeadLetter) else "retry"
        span.set_status(Status(StatusCode.ERROR, f"{detail}: {outcome.error}"[:200]))

    def relaying(self, message: OutboxMessage) -> AbstractContextManager[object]:
        try:
            traceparent = json.loads(message.payload).get("traceparent")
        except (ValueError, AttributeError):
            traceparent = None
        return self._tracer.start_as_current_span(
            f"{message.type} publish",
            context=_parent(traceparent if isinstance(traceparent, str) else None),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.operation.type": "send",
                "messaging.message.id": message.message_id,
                "saasfw.ordering_key": message.ordering_key,
                "saasfw.sequence": message.sequence,
            },
        )

    def relayed(self, message: OutboxMessage, error: BaseException | None) -> None:
        if error is not None:
            span = get_current_span()
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
