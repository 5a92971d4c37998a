"""Log context: the event being handled, on every log line written while it is handled.

A standard-library :class:`EventLogFilter` and a structlog-style processor
(:func:`add_event_context`, a plain function: no structlog import) add ``event_id``,
``event_type``, ``correlation_id``, ``actor`` and ``tenant`` of :func:`current_event` (a
verified event: its actor and tenant are signed) to lines that do not carry them already,
so a handler's lines are found by the event id and joined to the producing request by the
correlation id.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from saasfw.messaging._consumer import current_event
from saasfw.messaging._envelope import CloudEvent

__all__ = ["EventLogFilter", "add_event_context", "current_correlation_id"]


def current_correlation_id() -> str | None:
    """The correlation id of the event being handled, or None (a CorrelationIdProvider)."""
    event = current_event()
    return None if event is None else event.correlationid


def _fields(event: CloudEvent) -> dict[str, str | None]:
    return {
        "event_id": event.id,
        "event_type": event.type,
        "correlation_id": event.correlationid,
        "actor": event.actor,
        "tenant": event.tenant,
    }


class EventLogFilter(logging.Filter):
    """Add the handled event's ids, actor and tenant to records (on a handler or a logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        event = current_event()
        if event is not None:
            for name, value in _fields(event).items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


def add_event_context(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor adding the handled event's ids (explicit values win)."""
    event = current_event()
    if event is not None:
        for name, value in _fields(event).items():
            if value is not None:
                event_dict.setdefault(name, value)
    return event_dict
