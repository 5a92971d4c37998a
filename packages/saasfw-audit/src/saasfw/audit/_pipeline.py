"""The pipeline thread: the queue in front of it, batching, delivery to the sinks, flush, close.

``AuditLogger.record()`` puts a :class:`~saasfw.audit._record.PendingRecord` on the bounded
queue. The thread takes batches (by size or after ``batch_interval``), drops relayed events
already stored, encrypts the chosen fields, has the encoder number, chain and encode them
and hands each batch to every sink's delivery channel.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from saasfw.audit._crypto import FieldCipher
from saasfw.audit._dedup import RecentIds, SealedDetails
from saasfw.audit._delivery import Batch, DeliveryPolicy, SinkChannel
from saasfw.audit._encoder import RecordEncoder
from saasfw.audit._errors import AuditClosedError, AuditQueueFullError
from saasfw.audit._file import FileSink
from saasfw.audit._record import PendingRecord
from saasfw.audit._sink import EncodedBatch, EncodedRecord

_log = logging.getLogger("saasfw.audit")


@dataclass(frozen=True, slots=True)
class FlushReport:
    """What a flush or shutdown achieved; ``complete`` is False if anything is left."""

    complete: bool
    unprocessed: int
    unflushed: Mapping[str, int] = field(default_factory=dict)
    dropped: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SinkStats:
    written: int
    dropped: int
    spilled: int
    pending: int
    failures: int
    last_error: str | None
    refused: int = 0


@dataclass(frozen=True, slots=True)
class AuditStats:
    """Counters for metrics: every drop is counted exactly, per place it happened."""

    recorded: int
    dropped_queue_full: int
    failed_encoding: int
    queue_depth: int
    sinks: Mapping[str, SinkStats]


class Pipeline:
    """The queue and the thread that turns queued records into batches for the sinks.

    ``state`` goes ``new`` -> ``running`` -> ``closing`` -> ``closed``.

    Args:
        channels: one delivery channel per sink.
        encoder: numbers, chains and encodes the records (the producer's chain head).
        cipher, encrypted: encrypt these detail keys of each record (relayed ones are
            already sealed).
        queue_size, batch_size, batch_interval, queue_full_drop: as the logger's.
        resume: continue the producer's chain from the sinks' last record of it at start
            (False for a fresh producer id, which has no records anywhere).
    """

    def __init__(
        self,
        channels: Sequence[SinkChannel],
        encoder: RecordEncoder,
        *,
        cipher: FieldCipher | None,
        encrypted: Sequence[str],
        queue_size: int,
        batch_size: int,
        batch_interval: float,
        queue_full_drop: bool,
        resume: bool = True,
    ) -> None:
        self.channels = list(channels)
        self.encoder = encoder
        self.owing = [c for c in self.channels if c.owes_acks]
        self.gates = [c for c in self.channels if c.policy is DeliveryPolicy.FAIL_CLOSED]
        self.cipher = cipher
        self.encrypted = tuple(encrypted)
        self.state = "new"
        self.recorded = 0
        self.dropped_queue = 0
        self.failed = 0
        self.relayed_duplicates = 0
        self.recent: RecentIds | None = None
        self._maxsize = queue_size
        self._batch_size = batch_size
        self._batch_interval = batch_interval
        self._queue_full_drop = queue_full_drop
        self._queue: deque[PendingRecord] = deque()
        self._wake = threading.Event()
        self._space = threading.Condition()
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._resend: list[bytes] = []
        self._resume = resume
        # Relayed events taken but not yet stored, by id, with the batch carrying them: a
        # redelivery meanwhile (its relay timed out waiting) waits on that batch's outcome.
        self._unconfirmed: dict[str, Batch] = {}
        self._recent_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open the sinks, resume the producer's chain, start the threads."""
        if self.state != "new":
            return
        for ch in self.channels:
            ch.sink.open()
        if self._resume:
            self._resume_chain()
        for ch in self.channels:
            ch.start()
        self._thread = threading.Thread(target=self._run, name="saasfw-audit-pipeline", daemon=True)
        self.state = "running"
        self._thread.start()

    def _resume_chain(self) -> None:
        """Continue the producer's chain from the furthest record any sink holds of it.

        A file sink is authoritative: with one, another sink that cannot answer (its
        database is down) is skipped; without one, its error fails the start (the chain's
        position is unknown, and restarting at 1 would collide with stored records).
        """
        producer = self.encoder.producer_id
        has_file = any(isinstance(ch.sink, FileSink) for ch in self.channels)
        links: list[tuple[int, str]] = []
        for ch in self.channels:
            try:
                link = ch.last_link(producer)
            except Exception as exc:
                if not has_file or isinstance(ch.sink, FileSink):
                    raise
                _log.warning("audit sink %s cannot tell its chain head: %s", ch.name, exc)
                continue
            if link is not None:
                links.append(link)
        if links:
            self.encoder.resume(*max(links))

    @property
    def thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued record reached every sink (or its policy); True if so."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            if (
                not self._queue
                and not self._in_flight
                and all(ch.pending_events() == 0 for ch in self.channels)
            ):
                return True
            time.sleep(0.005)
        return False

    def close(self, timeout: float) -> FlushReport:
        """Stop taking records, flush within ``timeout`` seconds, close the sinks."""
        if self.state != "running":
            self.state = "closed"
            return FlushReport(True, 0)
        deadline = time.monotonic() + timeout
        self.state = "closing"
        self._wake.set()
        with self._space:
            self._space.notify_all()
        if self._thread is None:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.audit: the pipeline thread is unset")
        self._thread.join(max(0.0, deadline - time.monotonic()))
        unprocessed = len(self._queue) + (self._in_flight if self._thread.is_alive() else 0)
        unflushed: dict[str, int] = {}
        for ch in self.channels:
            left = ch.close(deadline)
            if left:
                unflushed[ch.name] = left
        for ch in self.channels:
            if ch.writer_alive:
                continue  # still stuck in a write: closing under it would corrupt it
            try:
                ch.sink.close()
            except Exception as exc:
                _log.error("audit sink %s failed to close: %s", ch.name, exc)
        self.state = "closed"
        report = FlushReport(
            complete=not unprocessed and not unflushed,
            unprocessed=unprocessed,
            unflushed=unflushed,
            dropped={ch.name: ch.dropped for ch in self.channels if ch.dropped}
            | ({"queue": self.dropped_queue} if self.dropped_queue else {}),
        )
        if not report.complete:
            _log.error("audit shutdown left events unflushed: %s", report)
        return report

    # -- the queue -------------------------------------------------------------------

    def enqueue(self, record: PendingRecord) -> None:
        """Queue a record; when the queue is full, wait (``block``) or count a drop."""
        q = self._queue
        if len(q) >= self._maxsize and not self._make_room():
            return
        q.append(record)
        if len(q) >= self._batch_size and not self._wake.is_set():
            self._wake.set()

    def enqueue_durable(self, record: PendingRecord, timeout: float) -> None:
        """Queue a record whose caller waits for its ack: never dropped, waits for room."""
        deadline = time.monotonic() + timeout
        with self._space:
            while len(self._queue) >= self._maxsize:
                if self.state != "running" or time.monotonic() >= deadline:
                    raise AuditQueueFullError("the audit queue stayed full; event not recorded")
                self._space.wait(0.05)
        self._queue.append(record)
        self._wake.set()

    def _make_room(self) -> bool:
        if self._queue_full_drop:
            self.dropped_queue += 1
            return False
        self._wake.set()
        with self._space:
            while len(self._queue) >= self._maxsize:
                if self.state != "running":
                    raise AuditClosedError("the audit logger closed while the queue was full")
                self._space.wait(0.05)
        return True

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        while True:
            if len(q) < self._batch_size and self.state == "running":
                self._wake.wait(self._batch_interval)
            self._wake.clear()
            n = min(len(q), self._batch_size)
            if n == 0:
                if self.state != "running":
                    return
                continue
            records = [q.popleft() for _ in range(n)]
            self._in_flight = n
            with self._space:
                self._space.notify_all()
            try:
                self._deliver(self.process(records))
            except Exception:
                self.failed += n
                _log.exception("audit pipeline failed on a batch of %d events", n)
                self._settle([r.id for r in records if type(r.details) is SealedDetails], False)
                for r in records:
                    if r.ack is not None:
                        r.ack(False)
            self._in_flight = 0
            self.recorded += n

    def _deliver(self, batch: Batch) -> None:
        if self._resend:
            self._offer_resend(batch)
        elif not batch.records:  # only relayed events already stored: no write
            batch.expect(0)
        if batch.records:
            batch.expect(len(self.owing))
            for ch in self.channels:
                ch.offer(batch)  # gives the acknowledgement itself if it does not queue

    def process(self, records: list[PendingRecord]) -> Batch:
        """Deduplicate, encrypt, number, chain and encode one batch."""
        joined: list[tuple[Batch, Callable[[bool], None]]] = []
        if self.recent is not None:
            # A duplicate's ack fires once its original is stored: with this batch when it
            # is stored already, else with the batch still carrying it (``joined``).
            acks, records = self._unseen(records, self.recent, joined)
        else:
            acks = [r.ack for r in records if r.ack is not None]
        if self.cipher is not None and self.encrypted:
            self._encrypt(self.cipher, records)
        encoder = self.encoder
        first_seq = encoder.seq + 1
        lines = encoder.encode(records)
        batch = Batch(EncodedBatch(lines, first_seq, encoder.producer_id, encoder.chained), acks)
        relayed = [r.id for r in records if type(r.details) is SealedDetails]
        if relayed and self.recent is not None:
            with self._recent_lock:
                for event_id in relayed:
                    self._unconfirmed[event_id] = batch
            batch.settled = lambda ok: self._settle(relayed, ok)
        for original, ack in joined:
            original.join(ack)
        return batch

    def _settle(self, relayed: Sequence[str], ok: bool) -> None:
        """Relayed events stored (``ok``) or given up: a given-up id is forgotten, so a
        redelivery is recorded rather than dropped as a duplicate."""
        if self.recent is None:
            return
        with self._recent_lock:
            for event_id in relayed:
                self._unconfirmed.pop(event_id, None)
                if not ok:
                    self.recent.discard(event_id)

    def _encrypt(self, cipher: FieldCipher, records: list[PendingRecord]) -> None:
        """Encrypt the chosen fields in place; a record that fails has them replaced."""
        if cipher.subjects is not None:
            # One fsync of the key store for all of the batch's new subjects.
            new_subjects = {
                r.subject
                for r in records
                if r.subject is not None and r.details and type(r.details) is not SealedDetails
            }
            if new_subjects:
                try:
                    cipher.subjects.ensure(new_subjects)
                except Exception:
                    _log.exception("audit subject keys could not be created")
        # Relayed events were encrypted when staged (SealedDetails).
        failed = cipher.encrypt_batch(
            [
                (r.id, r.details, r.subject)
                for r in records
                if r.details and type(r.details) is not SealedDetails
            ],
            self.encrypted,
            len(records),
        )
        for eid, exc in failed:
            # Fail closed: the fields still in clear were replaced, never stored.
            self.failed += 1
            _log.error("audit fields of event %s could not be encrypted", eid, exc_info=exc)

    def _unseen(
        self,
        records: list[PendingRecord],
        recent: RecentIds,
        joined: list[tuple[Batch, Callable[[bool], None]]],
    ) -> tuple[list[Callable[[bool], None]], list[PendingRecord]]:
        """The acks this batch owes, and its records without relayed events seen already.

        A duplicate whose original is still on its way to the sinks owes its ack with the
        original's batch (added to ``joined``), never before it is stored. A duplicate
        found in the file log's tail (the previous process died after the file stored it)
        is resent, as the file has it, to the idempotent sinks (SQL), which may not have
        stored it before the crash.
        """
        acks: list[Callable[[bool], None]] = []
        kept: list[PendingRecord] = []
        with self._recent_lock:
            for r in records:
                if type(r.details) is SealedDetails:
                    if r.id in recent:
                        self.relayed_duplicates += 1
                        original = self._unconfirmed.get(r.id)
                        if original is not None:
                            if r.ack is not None:
                                joined.append((original, r.ack))
                            continue
                        line = recent.lines.pop(r.id, None)
                        if line is not None:
                            self._resend.append(line)
                        if r.ack is not None:
                            acks.append(r.ack)
                        continue
                    recent.add(r.id)
                if r.ack is not None:
                    acks.append(r.ack)
                kept.append(r)
        return acks, kept

    def _offer_resend(self, batch: Batch) -> None:
        """Offer the resent lines to the idempotent sinks, ahead of ``batch``.

        When ``batch`` is empty its acknowledgements ride on the resend, so a relay deletes
        the outbox row only once the SQL sink has the event.
        """
        lines, self._resend = self._resend, []
        targets = [ch for ch in self.channels if getattr(ch.sink, "idempotent", False)]
        resend = Batch(
            [EncodedRecord.from_line(line) for line in lines],
            [] if batch.records else batch.acks,
        )
        resend.expect(sum(1 for ch in targets if ch.owes_acks))
        for ch in targets:
            ch.offer(resend)

    # -- introspection ---------------------------------------------------------------

    def stats(self) -> AuditStats:
        return AuditStats(
            recorded=self.recorded,
            dropped_queue_full=self.dropped_queue,
            failed_encoding=self.failed,
            queue_depth=len(self._queue),
            sinks={
                ch.name: SinkStats(
                    written=ch.written,
                    dropped=ch.dropped,
                    spilled=ch.spilled,
                    pending=ch.queued_events,
                    failures=ch.failures,
                    last_error=ch.last_error,
                    refused=ch.refused,
                )
                for ch in self.channels
            },
        )
