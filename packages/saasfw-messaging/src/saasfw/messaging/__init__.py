"""saasfw.messaging: events between services through a transactional outbox.

The broker integrations live in :mod:`saasfw.messaging.rabbit` (extra ``[rabbit]``) and
:mod:`saasfw.messaging.nats` (extra ``[nats]``).
"""

from __future__ import annotations

from saasfw.messaging._asyncapi import asyncapi_document, asyncapi_router
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
from saasfw.messaging._deadletters import (
    DeadLetterRecord,
    ReplayRefused,
    dead_letter_table,
    get_dead_letter,
    list_dead_letters,
    replay_dead_letter,
)
from saasfw.messaging._drain import DrainReport
from saasfw.messaging._envelope import CONTENT_TYPE, CloudEvent, parse_event
from saasfw.messaging._errors import (
    EventRejected,
    MessagingError,
    MissingExtraError,
    SignatureError,
)
from saasfw.messaging._health import BrokerUnavailable, broker_check, relay_check
from saasfw.messaging._inbox import inbox_table, prune_inbox
from saasfw.messaging._jobs import inbox_cleanup_job, messaging_jobs
from saasfw.messaging._logcontext import (
    EventLogFilter,
    add_event_context,
    current_correlation_id,
)
from saasfw.messaging._observe import Observer, bind_correlation_id, observed_delivery
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
    "BrokerUnavailable",
    "CloudEvent",
    "ConsumerStats",
    "DeadLetter",
    "DeadLetterRecord",
    "DrainReport",
    "EventConsumer",
    "EventLogFilter",
    "EventRejected",
    "EventSigner",
    "EventVerifier",
    "MessagingError",
    "MessagingSettings",
    "MissingExtraError",
    "Observer",
    "Outcome",
    "Publisher",
    "Received",
    "RelaySettings",
    "ReplayRefused",
    "Retry",
    "SignatureError",
    "__version__",
    "add_event_context",
    "asyncapi_document",
    "asyncapi_router",
    "bind_correlation_id",
    "broker_check",
    "current_correlation_id",
    "current_event",
    "dead_letter_table",
    "get_dead_letter",
    "inbox_cleanup_job",
    "inbox_table",
    "list_dead_letters",
    "messaging_jobs",
    "messaging_production_problems",
    "observed_delivery",
    "parse_event",
    "prune_inbox",
    "relay_check",
    "replay_dead_letter",
]
