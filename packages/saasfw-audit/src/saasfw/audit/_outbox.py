"""The audit outbox: stage an event in the caller's transaction, relay it to the logger.

Built on saasfw-core's outbox (``saasfw.core.outbox``). Staging stamps the event (id, time,
actor, correlation and trace ids) and encrypts its fields at once, so the outbox table, the
WAL and every backup hold only ciphertext. The relay hands each committed event to the
logger's pipeline with the same id, durably (chain and every sink); a redelivery after a
crash is dropped by the pipeline (see ``_dedup``) and by the SQL sink's primary key.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from saasfw.audit._dedup import DEFAULT_WINDOW, SealedDetails
from saasfw.audit._errors import AuditClosedError, AuditDeliveryError, AuditUnavailableError
from saasfw.audit._event import Actor, Resource
from saasfw.audit._record import PendingRecord
from saasfw.core.outbox import (
    OutboxMessage,
    OutboxRelay,
    OutboxStats,
    OutboxTables,
    outbox_tables,
    stage_message,
)

if TYPE_CHECKING:
    from sqlalchemy import MetaData
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

    from saasfw.audit._logger import AuditLogger

__all__ = ["DEFAULT_TABLE", "MESSAGE_TYPE", "AuditOutbox"]

DEFAULT_TABLE = "saasfw_audit_outbox"
MESSAGE_TYPE = "saasfw.audit.event"


class AuditOutbox:
    """Stage audit events inside the caller's own transaction; relay them to the logger.

    An event staged in a transaction that rolls back never existed; one staged in a
    transaction that commits is delivered to every sink at least once, and recorded once
    (redeliveries are recognised by event id). Events are delivered in order per ordering
    key: the logger's producer id by default, so one replica's events reach the log in
    the order their transactions committed.

    Staging serialises on the ordering key's counter row until the caller commits: stage
    last in the transaction, just before the commit.

    Args:
        logger: the service's logger (its cipher, fields and ports are used at staging).
        metadata, schema, name: where the outbox tables are declared (give the service's
            own ``MetaData`` so its migrations create them).
        key: the ordering key (default: ``logger.producer_id``).
        max_depth: staging is refused while this many events wait undelivered.
        max_age: staging is refused once the oldest waiting event is this many seconds old.
        stats_interval: how long a depth/age reading is reused, in seconds (meanwhile
            the events this process stages and its relays deliver adjust it; other
            replicas' do not).
        dedup_window: event ids the pipeline remembers to drop redeliveries.
    """

    def __init__(
        self,
        logger: AuditLogger,
        *,
        metadata: MetaData | None = None,
        schema: str | None = None,
        name: str = DEFAULT_TABLE,
        key: str | None = None,
        max_depth: int = 100_000,
        max_age: float = 300.0,
        stats_interval: float = 1.0,
        dedup_window: int = DEFAULT_WINDOW,
    ) -> None:
        if max_depth < 1 or max_age <= 0:
            raise ValueError("max_depth and max_age must be positive")
        self.logger = logger
        self.tables: OutboxTables = outbox_tables(name, metadata=metadata, schema=schema)
        self.key = key or logger.producer_id
        self.max_depth = max_depth
        self.max_age = max_age
        self.refused = 0
        self._stats_interval = stats_interval
        self._stats: tuple[float, OutboxStats] | None = None
        # Between readings the depth is estimated: plus the events this process staged,
        # minus those its relays delivered since (other replicas' traffic is not seen).
        self._staged_since = 0
        self._delivered_at_reading = 0
        self._relays: list[OutboxRelay] = []
        logger.track_relayed(dedup_window)

    # -- staging ---------------------------------------------------------------------

    async def stage(
        self,
        target: AsyncConnection | AsyncSession,
        type: str,
        *,
        action: str | None = None,
        outcome: str = "success",
        resource: Resource | None = None,
        details: Mapping[str, Any] | None = None,
        subject: str | None = None,
        actor: Actor | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Stage one event in ``target``'s open transaction; return its event id.

        Raises:
            AuditUnavailableError: the outbox is past its bound (depth or age); nothing
                was staged, and the caller should roll back (the umbrella answers 503).
        """
        await self._check_bound(target)
        lg = self.logger
        ts = lg.clock()
        eid = lg.next_event_id(ts)
        if actor is None and lg.actor_provider is not None:
            actor = lg.actor_provider()
        if correlation_id is None and lg.correlation_id_provider is not None:
            correlation_id = lg.correlation_id_provider()
        trace = lg.trace_ids_provider() if lg.trace_ids_provider is not None else None
        sealed = SealedDetails(details or {})
        cipher, fields = lg.cipher, lg.encrypted_fields
        if sealed and cipher is not None and fields:
            if subject is not None and cipher.subjects is not None:
                cipher.subjects.ensure([subject])
            failed = cipher.encrypt_batch([(eid, sealed, subject)], fields, 1)
            if failed:
                # Fail closed: never stage a field in clear.
                raise AuditDeliveryError(f"the fields of event {eid} could not be encrypted")
        payload = json.dumps(
            {
                "ts": ts,
                "type": type,
                "action": action,
                "outcome": outcome,
                "actor": actor.as_dict() if actor is not None else None,
                "resource": resource.as_dict() if resource is not None else None,
                "correlation_id": correlation_id,
                "trace_id": trace[0] if trace else None,
                "details": sealed,
            },
            separators=(",", ":"),
            default=str,
        )
        await stage_message(
            self.tables, target, key=self.key, type=MESSAGE_TYPE, payload=payload, message_id=eid
        )
        self._staged_since += 1
        return eid

    async def _check_bound(self, target: AsyncConnection | AsyncSession) -> None:
        stats = await self._current_stats(target)
        delivered = self._delivered() - self._delivered_at_reading
        depth = max(0, stats.depth + self._staged_since - delivered)
        if depth >= self.max_depth:
            reason = f"{depth} audit events wait undelivered (bound {self.max_depth})"
        elif stats.oldest_age is not None and stats.oldest_age > self.max_age:
            reason = (
                f"the oldest undelivered audit event waited {stats.oldest_age:.0f}s "
                f"(bound {self.max_age:.0f}s)"
            )
        else:
            return
        self.refused += 1
        raise AuditUnavailableError(
            f"{reason}: the audit outbox is not being delivered; the operation was not "
            "carried out. Check the audit sinks and the relay, then retry",
            retry_after=max(1.0, math.ceil(self._stats_interval * 5)),
            sink="outbox",
        )

    async def _current_stats(self, target: AsyncConnection | AsyncSession) -> OutboxStats:
        """Depth and oldest age, read on the caller's connection at most every interval."""
        now = time.monotonic()
        cached = self._stats
        if cached is not None and now - cached[0] < self._stats_interval:
            return cached[1]
        from sqlalchemy import func, select

        m = self.tables.messages
        query = select(func.count(), func.min(m.c.created_at))
        row = (await target.execute(query)).one()
        depth, oldest = int(row[0]), row[1]
        stats = OutboxStats(depth, None if oldest is None else time.time() - float(oldest))
        self._stats = (now, stats)
        self._staged_since = 0
        self._delivered_at_reading = self._delivered()
        return stats

    def _delivered(self) -> int:
        return sum(relay.state.delivered for relay in self._relays)

    # -- delivery --------------------------------------------------------------------

    async def deliver(self, message: OutboxMessage) -> None:
        """Record one staged event through the logger, durably, with its own id and time."""
        lg = self.logger
        if not lg.running:
            raise AuditClosedError("the audit logger is not running; the event stays staged")
        p = json.loads(message.payload)
        record = PendingRecord(
            int(p["ts"]),
            message.message_id,
            p["type"],
            p["action"],
            p["outcome"],
            Actor(**p["actor"]) if p["actor"] else None,
            Resource(**p["resource"]) if p["resource"] else None,
            p["correlation_id"],
            (p["trace_id"],) if p["trace_id"] else None,
            SealedDetails(p["details"]),
        )
        try:
            await lg.arecord_pending(record)
        except AuditDeliveryError as exc:
            raise AuditDeliveryError(f"relayed {exc}; it stays staged") from None

    def relay(self, engine: AsyncEngine, **options: Any) -> OutboxRelay:
        """A relay delivering this outbox to the logger (``async with`` it in the lifespan).

        ``options`` are :class:`saasfw.core.outbox.OutboxRelay`'s (``lease_seconds``,
        ``batch_size``, ``poll_interval``...). :meth:`wake` wakes every relay made here.
        """
        relay = OutboxRelay(self.tables, engine, self.deliver, **options)
        self._relays.append(relay)
        return relay

    def wake(self) -> None:
        """Deliver now rather than at the next poll (call it after the commit)."""
        for relay in self._relays:
            relay.wake()

    def __repr__(self) -> str:
        return f"AuditOutbox(table={self.tables.messages.fullname!r}, key={self.key!r})"
