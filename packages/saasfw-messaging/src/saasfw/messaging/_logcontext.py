"""Log context: the event being handled, on every log line written while it is handled.

A standard-library :class:`EventLogFilter` and a structlog-style processor
(:func:`add_event_context`, a plain function: no structlog import) add ``event_id``,
``event_type`` and ``correlation_id`` of :func:`current_event` to lines that do not carry
them already, so a handler's lines are found by the event id and joined to the producing
request by the correlation id.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from saasfw.messaging._consumer import current_event

__all__ = ["EventLogFilter", "add_event_context", "current_correlation_id"]


def current_correlation_id() -> str | None:
    """The correlation id of the event being handled, or None (a CorrelationIdProvider)."""
    event = current_event()
    return None if event is None else event.correlationid


class EventLogFilter(logging.Filter):
    """Add ``event_id``, ``event_type`` and ``correlation_id`` to records (handler or logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        event = current_event()
        if event is not None:
            for name, value in (
                ("event_id", event.id),
                ("event_type", event.type),
                ("correlation_id", event.correlationid),
            ):
                if not hasattr(record, name):
                    setattr(record, name, value)
        return True


def add_event_context(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor adding the handled event's ids (explicit values win)."""
    event = current_event()
    if event is not None:
        event_dict.setdefault("event_id", event.id)
        event_dict.setdefault("event_type", event.type)
        if event.correlationid is not None:
            event_dict.setdefault("correlation_id", event.correlationid)
    return event_dict
