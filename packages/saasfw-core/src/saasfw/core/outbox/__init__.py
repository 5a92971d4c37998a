"""saasfw.core.outbox: the one transactional outbox that audit and messaging build on.

Needs the ``[sql]`` extra (SQLAlchemy). Stage a message inside the unit of work that makes
the change (:func:`stage_message`); an :class:`OutboxRelay` in the lifespan of every
replica delivers committed messages through a callable, at least once and in order per
ordering key.
"""

from __future__ import annotations

try:
    import sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the isolation check
    raise ImportError(
        "saasfw.core.outbox needs SQLAlchemy: pip install 'saasfw-core[sql]'"
    ) from exc

from saasfw.core.outbox._relay import OutboxMessage, OutboxRelay, RelayState
from saasfw.core.outbox._stage import OutboxStats, StagedMessage, outbox_stats, stage_message
from saasfw.core.outbox._tables import OutboxTables, outbox_tables

__all__ = [
    "OutboxMessage",
    "OutboxRelay",
    "OutboxStats",
    "OutboxTables",
    "RelayState",
    "StagedMessage",
    "outbox_stats",
    "outbox_tables",
    "stage_message",
]
