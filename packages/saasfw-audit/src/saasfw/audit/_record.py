"""The record type: one audit event on its way from ``record()`` to the sinks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from saasfw.audit._event import Actor, Resource

Ack = Callable[[bool], None]
"""Called once from the pipeline with True when every owing sink stored the record."""


@dataclass(frozen=True, slots=True)
class PendingRecord:
    """An event stamped on the caller's side and queued for the pipeline.

    The pipeline numbers it, encrypts the chosen ``details`` in place (the mapping is the
    logger's own copy, or an outbox's :class:`~saasfw.audit._dedup.SealedDetails` already
    encrypted when staged), chains and encodes it. Values are as the caller passed them:
    the encoder renders a non-string where a string belongs with ``str``.

    Attributes:
        ts: the event time in nanoseconds since the epoch.
        id: the event id (time-ordered).
        type, action, outcome: what happened (``action`` None: the type's last segment).
        actor, resource: who did it, to what.
        correlation_id: the request's or job's correlation id.
        trace: the (trace id, span id) pair of the current span, if any.
        details: the structured details (None or empty: ``{}``).
        subject: the data subject of the encrypted fields (crypto-shredding).
        ack: for a durable record, told whether it was stored.
    """

    ts: int
    id: str
    type: Any
    action: Any
    outcome: Any
    actor: Actor | None = None
    resource: Resource | None = None
    correlation_id: Any = None
    trace: tuple[str, ...] | None = None
    details: dict[str, Any] | None = None
    subject: str | None = None
    ack: Ack | None = None
