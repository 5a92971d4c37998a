"""saasfw.messaging: events between services through a transactional outbox.

The broker integrations live in :mod:`saasfw.messaging.rabbit` (extra ``[rabbit]``) and
:mod:`saasfw.messaging.nats` (extra ``[nats]``).
"""

from __future__ import annotations

from saasfw.messaging._consumer import (
    Ack,
    ConsumerStats,
    DeadLetter,
    EventConsumer,
    Outcome,
    Received,
    Retry,
    current_event,
)
from saasfw.messaging._envelope import CONTENT_TYPE, CloudEvent, parse_event
from saasfw.messaging._errors import (
    EventRejected,
    MessagingError,
    MissingExtraError,
    SignatureError,
)
from saasfw.messaging._inbox import inbox_table, prune_inbox
from saasfw.messaging._publisher import Publisher
from saasfw.messaging._settings import (
    MessagingSettings,
    RelaySettings,
    messaging_production_problems,
)
from saasfw.messaging._signing import EventSigner, EventVerifier
from saasfw.messaging._version import __version__

__all__ = [
    "CONTENT_TYPE",
    "Ack",
    "CloudEvent",
    "ConsumerStats",
    "DeadLetter",
    "EventConsumer",
    "EventRejected",
    "EventSigner",
    "EventVerifier",
    "MessagingError",
    "MessagingSettings",
    "MissingExtraError",
    "Outcome",
    "Publisher",
    "Received",
    "RelaySettings",
    "Retry",
    "SignatureError",
    "__version__",
    "current_event",
    "inbox_table",
    "messaging_production_problems",
    "parse_event",
    "prune_inbox",
]
