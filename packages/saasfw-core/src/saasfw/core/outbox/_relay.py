"""The relay: deliver committed outbox messages, in order per key, at least once.

Every replica runs one. A relay *leases* an ordering key before it delivers that key's
messages, so one relay at a time owns a key and per-key order holds across the fleet
(row-level ``SKIP LOCKED`` alone would let two relays deliver one key's messages out of
order). A round claims (or re-claims) up to ``max_keys`` keys, delivers one batch of each,
and settles them together; while a batch's deliveries are slow its lease is renewed every
third of its length. A relay that died loses its keys when their leases run out.

A message is deleted only after the delivery callable returned, so a crash between the
two delivers it again: consumers deduplicate by ``message_id`` (an inbox), and the
per-key ``sequence`` lets them check order. A failing message holds back the later
messages of its own key only, retried with capped exponential backoff; it is never
dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from saasfw.core._background import BackgroundLoop
from saasfw.core.outbox._stage import upsert
from saasfw.core.outbox._tables import OutboxTables

__all__ = ["OutboxMessage", "OutboxRelay", "RelayState"]

logger = logging.getLogger("saasfw.core.outbox")

FAILPOINT_ENV = "SAASFW_FAILPOINT"
"""Crash tests set it to ``outbox.before_delete``: the process SIGKILLs itself after a batch
was delivered and before its rows are deleted (the moment a redelivery must not double)."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One staged message, as the delivery callable receives it."""

    message_id: str
    ordering_key: str
    sequence: int
    type: str
    payload: str
    headers: Mapping[str, str]
    created_at: float
    attempts: int


@dataclass(slots=True)
class RelayState:
    """What health checks and metrics read: delivered and failed counts, last error."""

    delivered: int = 0
    failed: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None
    last_success: float | None = None
    owned_keys: set[str] = field(default_factory=set)

    @property
    def degraded(self) -> bool:
        """True while delivery or the database keeps failing (three errors in a row)."""
        return self.consecutive_errors >= 3


Deliver = Callable[[OutboxMessage], Awaitable[None]]


@dataclass(slots=True)
class _Outcome:
    """What one round did with one key."""

    key: str
    drained: bool  # the batch read was the key's last (shorter than the batch size)
    done: list[int] = field(default_factory=list)
    failure: tuple[int, OutboxMessage, BaseException] | None = None
    lost: bool = False  # the lease went to another relay mid-batch
    reason: str | None = None
    delay: float = 0.0


def default_relay_id() -> str:
    """Host, process and a random part: unique per process life, readable in a lease row."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class OutboxRelay(BackgroundLoop):
    """Deliver one outbox's committed messages through ``deliver``; run it in the lifespan.

    Args:
        tables: the outbox's tables (:func:`outbox_tables`).
        engine: the service's async engine.
        deliver: awaited once per message, in order per key; raising means "not
            delivered, retry later".
        lease_seconds: how long a key stays owned without renewal; must exceed the
            longest delivery of one message (it is renewed between messages).
        batch_size: messages per key delivered in one round (a longer key keeps its lease
            and continues in the next round).
        max_keys: keys delivered concurrently by this relay.
        poll_interval: the pause when nothing was waiting (``wake()`` cuts it short).
        max_backoff: the ceiling of the per-key retry delay, in seconds.
    """

    def __init__(
        self,
        tables: OutboxTables,
        engine: AsyncEngine,
        deliver: Deliver,
        *,
        relay_id: str | None = None,
        lease_seconds: float = 30.0,
        batch_size: int = 100,
        max_keys: int = 64,
        poll_interval: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self.tables = tables
        self.engine = engine
        self.relay_id = relay_id or default_relay_id()
        self.state = RelayState()
        self._deliver = deliver
        self._lease = lease_seconds
        self._batch = batch_size
        self._max_keys = max_keys
        self._poll = poll_interval
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._crash_before_delete = os.environ.get(FAILPOINT_ENV) == "outbox.before_delete"

    def wake(self) -> None:
        """Look for work now instead of after the poll interval (after a commit)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Claim keys with waiting messages and deliver them; return how many were delivered.

        One round costs three statements whatever the number of keys: the claim, one read
        of every claimed key's next batch, and one transaction deleting what was delivered,
        releasing the drained keys and scheduling the failed ones' retries. Deliveries run
        concurrently across keys and in sequence order within a key.
        """
        keys = await self._claim()
        if not keys:
            return 0
        batches = await self._batches_of(keys)
        outcomes = await asyncio.gather(
            *(self._deliver_key(key, batches.get(key, [])) for key in keys)
        )
        if self._crash_before_delete and any(o.done for o in outcomes):
            logger.warning("failpoint outbox.before_delete: killing this process")
            os.kill(os.getpid(), signal.SIGKILL)
        await self._settle(outcomes)
        delivered = sum(len(o.done) for o in outcomes)
        self.state.delivered += delivered
        for outcome in outcomes:
            if outcome.failure is not None:
                self._count_failure(outcome)
        if any(o.failure is None and o.done for o in outcomes):
            self.state.consecutive_errors = 0
            self.state.last_success = time.time()
        return delivered

    async def _claim(self) -> list[str]:
        m, leases = self.tables.messages, self.tables.leases
        now = time.time()
        blocked = (
            select(leases.c.ordering_key)
            .where(leases.c.ordering_key == m.c.ordering_key)
            .where(
                or_(
                    and_(leases.c.lease_until >= now, leases.c.leased_by != self.relay_id),
                    leases.c.retry_at > now,
                )
            )
            .exists()
        )
        candidates = (
            select(m.c.ordering_key)
            .where(~blocked)
            .group_by(m.c.ordering_key)
            .order_by(func.min(m.c.id))
            .limit(self._max_keys)
        )
        claimed: list[str] = []
        async with self.engine.begin() as conn:
            keys = list((await conn.execute(candidates)).scalars())
            if keys:
                # One statement for every candidate key: a key whose lease another relay
                # holds (or whose retry is not due) is left out by the conflict's WHERE.
                statement = upsert(conn.dialect.name, leases).values(
                    [
                        {
                            "ordering_key": key,
                            "leased_by": self.relay_id,
                            "lease_until": now + self._lease,
                            "retry_at": 0.0,
                        }
                        for key in keys
                    ]
                )
                statement = statement.on_conflict_do_update(
                    index_elements=[leases.c.ordering_key],
                    set_={"leased_by": self.relay_id, "lease_until": now + self._lease},
                    where=and_(
                        or_(
                            leases.c.lease_until < now,
                            leases.c.leased_by == self.relay_id,
                        ),
                        leases.c.retry_at <= now,
                    ),
                ).returning(leases.c.ordering_key)
                won = set((await conn.execute(statement)).scalars())
                claimed = [key for key in keys if key in won]  # oldest message first
        self.state.owned_keys = set(claimed)
        return claimed

    async def _renew(self, key: str) -> bool:
        leases = self.tables.leases
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(leases)
                .where(leases.c.ordering_key == key, leases.c.leased_by == self.relay_id)
                .values(lease_until=time.time() + self._lease)
            )
        return bool(result.rowcount)

    async def _batches_of(self, keys: list[str]) -> dict[str, list[tuple[int, OutboxMessage]]]:
        """The next batch (in sequence order) of each key, read in one statement."""
        m = self.tables.messages
        ranked = (
            select(
                m,
                func.row_number()
                .over(partition_by=m.c.ordering_key, order_by=m.c.sequence)
                .label("rank"),
            )
            .where(m.c.ordering_key.in_(keys))
            .subquery()
        )
        query = (
            select(ranked)
            .where(ranked.c.rank <= self._batch)
            .order_by(ranked.c.ordering_key, ranked.c.sequence)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        batches: dict[str, list[tuple[int, OutboxMessage]]] = {}
        for row in rows:
            batches.setdefault(row["ordering_key"], []).append(
                (
                    int(row["id"]),
                    OutboxMessage(
                        message_id=row["message_id"],
                        ordering_key=row["ordering_key"],
                        sequence=int(row["sequence"]),
                        type=row["type"],
                        payload=row["payload"],
                        headers=json.loads(row["headers"]),
                        created_at=float(row["created_at"]),
                        attempts=int(row["attempts"]),
                    ),
                )
            )
        return batches

    async def _deliver_key(self, key: str, batch: list[tuple[int, OutboxMessage]]) -> _Outcome:
        """Deliver one key's batch in order, until the end or the first failure."""
        outcome = _Outcome(key, drained=len(batch) < self._batch)
        renewed = time.monotonic()
        for row_id, message in batch:
            # A slow delivery (a sink retrying) must not outlive the lease, or another
            # relay would take the key and deliver its messages out of order.
            if time.monotonic() - renewed > self._lease / 3:
                try:
                    kept = await self._renew(key)
                except Exception as exc:  # the database: settle what was delivered so far
                    logger.warning("outbox lease of key %s not renewed: %s", key, exc)
                    kept = False
                if not kept:
                    outcome.lost = True
                    break
                renewed = time.monotonic()
            try:
                await self._deliver(message)
            except Exception as exc:
                outcome.failure = (row_id, message, exc)
                break
            outcome.done.append(row_id)
        return outcome

    async def _settle(self, outcomes: list[_Outcome]) -> None:
        """Delete what was delivered, release drained keys, schedule failed keys' retries,
        in one transaction. A message staged meanwhile for a released key is found by the
        next claim."""
        m, leases = self.tables.messages, self.tables.leases
        done = [row_id for o in outcomes for row_id in o.done]
        released = [o.key for o in outcomes if o.failure is None and not o.lost and o.drained]
        failed = [o for o in outcomes if o.failure is not None]
        if not done and not released and not failed:
            return
        now = time.time()
        async with self.engine.begin() as conn:
            if done:
                await conn.execute(delete(m).where(m.c.id.in_(done)))
            if released:
                await conn.execute(
                    delete(leases).where(
                        leases.c.ordering_key.in_(released), leases.c.leased_by == self.relay_id
                    )
                )
            for outcome in failed:
                row_id, message, exc = outcome.failure  # type: ignore[misc]
                attempts = message.attempts + 1
                delay = min(self._max_backoff, 0.2 * 2 ** min(attempts - 1, 16))
                delay *= random.uniform(0.8, 1.2)  # noqa: S311  # nosec B311 - jitter, not a secret
                outcome.reason = f"{type(exc).__name__}: {exc}"[:500]
                outcome.delay = delay
                await conn.execute(
                    update(m)
                    .where(m.c.id == row_id)
                    .values(attempts=attempts, last_error=outcome.reason)
                )
                await conn.execute(
                    update(leases)
                    .where(
                        leases.c.ordering_key == outcome.key, leases.c.leased_by == self.relay_id
                    )
                    .values(lease_until=0.0, retry_at=now + delay)
                )

    def _count_failure(self, outcome: _Outcome) -> None:
        if outcome.failure is None:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.core: no failure to count")
        _, message, _ = outcome.failure
        self.state.failed += 1
        self.state.consecutive_errors += 1
        self.state.last_error = outcome.reason
        logger.warning(
            "outbox delivery of %s (key %s, sequence %s) failed, attempt %s; retrying in %.1fs: %s",
            message.message_id,
            outcome.key,
            message.sequence,
            message.attempts + 1,
            outcome.delay,
            outcome.reason,
        )

    async def run(self) -> None:
        """Deliver until cancelled; database errors back off and never end the loop."""
        pause = self._poll
        while True:
            try:
                delivered = await self.run_once()
                pause = self._poll
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delivered = 0
                self.state.consecutive_errors += 1
                self.state.last_error = f"{type(exc).__name__}: {exc}"[:500]
                pause = min(self._max_backoff, max(pause, self._poll) * 2)
                logger.warning("outbox relay round failed; retrying in %.1fs", pause, exc_info=exc)
            if delivered:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)

    @property
    def task_name(self) -> str:
        """The background task's name."""
        return f"outbox-relay-{self.relay_id}"
