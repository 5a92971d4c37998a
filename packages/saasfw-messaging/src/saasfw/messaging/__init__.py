"""saasfw.messaging: events between services through a transactional outbox."""

from __future__ import annotations

from saasfw.messaging._envelope import CONTENT_TYPE, CloudEvent, parse_event
from saasfw.messaging._errors import (
    EventRejected,
    MessagingError,
    MissingExtraError,
    SignatureError,
)
from saasfw.messaging._settings import MessagingSettings, RelaySettings
from saasfw.messaging._signing import EventSigner, EventVerifier
from saasfw.messaging._version import __version__

__all__ = [
    "CONTENT_TYPE",
    "CloudEvent",
    "EventRejected",
    "EventSigner",
    "EventVerifier",
    "MessagingError",
    "MessagingSettings",
    "MissingExtraError",
    "RelaySettings",
    "SignatureError",
    "__version__",
    "parse_event",
]
