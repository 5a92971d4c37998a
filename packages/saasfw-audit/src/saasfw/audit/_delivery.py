"""Per-sink delivery: a bounded buffer, a worker thread, retry with backoff and a policy.

Policies, applied when the sink's buffer is full (typically because the sink is down):

- ``block``: the pipeline waits for space, which backs up into the logger's queue and, when
  that is full too, into the record call. Nothing is lost; callers slow down.
- ``spill``: batches go to a bounded file on local disk (at once while the sink is failing)
  and are replayed, in order, once the sink accepts writes again. When the spill file is
  full too, batches are dropped and counted.
- ``drop``: the batch is discarded and its events counted exactly in ``dropped``.
- ``fail_closed``: as ``block``, and in addition, while the sink's writes are failing (a
  full disk, an I/O error, a store that is down) the logger refuses new events: the
  record call raises ``AuditUnavailableError`` (counted in ``refused``) so the caller does
  not commit what it could not audit. Events accepted before the failure are kept and
  retried like ``block``; new events are accepted again once a write succeeds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from saasfw.audit._append import append_all_or_nothing, describe, rollback, write_all
from saasfw.audit._errors import AuditConfigError, AuditUnavailableError
from saasfw.audit._sink import AuditSink, EncodedRecord

_log = logging.getLogger("saasfw.audit")


class DeliveryPolicy(StrEnum):
    """What happens to a batch when a sink's buffer is full."""

    BLOCK = "block"
    SPILL = "spill"
    DROP = "drop"
    FAIL_CLOSED = "fail_closed"


# Policies whose channel holds every batch until the sink stored it.
_HOLDING = (DeliveryPolicy.BLOCK, DeliveryPolicy.FAIL_CLOSED)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A sink with its delivery policy and limits.

    Args:
        sink: the destination.
        policy: ``block``, ``fail_closed``, ``spill`` or ``drop`` (see the module docs).
        buffer_events: events held in memory for this sink before the policy applies.
        spill_path: the spill file (required for ``spill``).
        spill_max_bytes: the spill file's size limit; beyond it batches are dropped, counted.
        retry_initial: first backoff after a failed write, in seconds; doubles up to retry_max.
        retry_max: the longest backoff, in seconds.
    """

    sink: AuditSink
    policy: DeliveryPolicy | str = DeliveryPolicy.BLOCK
    buffer_events: int = 10_000
    spill_path: str | os.PathLike[str] | None = None
    spill_max_bytes: int = 64 * 1024 * 1024
    retry_initial: float = 0.05
    retry_max: float = 5.0


class Batch:
    """Records processed together, with the acknowledgements owed once they are stored.

    ``settled`` (optional) is called once, after the acknowledgements, with the outcome.
    """

    __slots__ = ("_fired", "_lock", "_ok", "_pending", "acks", "records", "settled")

    def __init__(
        self, records: Sequence[EncodedRecord], acks: list[Callable[[bool], None]]
    ) -> None:
        self.records = records
        self.acks = acks
        self.settled: Callable[[bool], None] | None = None
        self._pending = 0
        self._ok = True
        self._fired = False
        self._lock = threading.Lock()

    def expect(self, n: int) -> None:
        self._pending = n
        if n == 0:
            self._fire()

    def done(self, ok: bool = True) -> None:
        """One block-policy sink stored the batch (``ok``) or gave it up at shutdown."""
        with self._lock:
            self._pending -= 1
            self._ok = self._ok and ok
            fire = self._pending == 0
        if fire:
            self._fire()

    def join(self, ack: Callable[[bool], None]) -> None:
        """Owe ``ack`` too: it fires with this batch's outcome (at once if already known)."""
        with self._lock:
            if not self._fired:
                self.acks.append(ack)
                return
        ack(self._ok)

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            acks = list(self.acks)
        for ack in acks:
            ack(self._ok)
        if self.settled is not None:
            self.settled(self._ok)


class SpillFile:
    """An append-only, fsynced, size-bounded overflow file read back in order."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self._read_offset = 0
        self._size = path.stat().st_size if path.exists() else 0
        if self._size:
            from saasfw.audit._file import repair_torn_tail

            self._size -= repair_torn_tail(path)

    @property
    def pending_bytes(self) -> int:
        return self._size - self._read_offset

    def pending_events(self) -> int:
        if not self.pending_bytes:
            return 0
        with self.path.open("rb") as fh:
            fh.seek(self._read_offset)
            return fh.read().count(b"\n")

    def append(self, records: Sequence[EncodedRecord]) -> bool:
        data = b"".join(r.line for r in records)
        if self._size + len(data) > self.max_bytes:
            return False
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                if os.fstat(fd).st_size != self._size:  # a rollback that failed earlier
                    rollback(fd, self._size)
                append_all_or_nothing(fd, data, self._size)
            finally:
                os.close(fd)
        except OSError as exc:
            _log.error("audit spill file %s: append failed: %s", self.path, describe(exc))
            return False
        self._size += len(data)
        return True

    def prepend(self, records: Sequence[EncodedRecord]) -> bool:
        """Put records before the pending ones (they are older), by rewriting the file."""
        if not self.pending_bytes:
            return self.append(records)
        data = b"".join(r.line for r in records)
        if self.pending_bytes + len(data) > self.max_bytes:
            return False
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with self.path.open("rb") as src:
                src.seek(self._read_offset)
                data += src.read(self.pending_bytes)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            _log.error("audit spill file %s: rewrite failed: %s", self.path, describe(exc))
            tmp.unlink(missing_ok=True)
            return False
        self._size, self._read_offset = len(data), 0
        return True

    def last_link(self, producer: str) -> tuple[int, str] | None:
        """(sequence, mac) of the producer's last pending chained record, if any."""
        if not self.pending_bytes:
            return None
        from saasfw.audit._file import reverse_lines

        for line in reverse_lines(self.path, stop=self._read_offset):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("producer") == producer and "mac" in record:
                return int(record["seq"]), str(record["mac"])
        return None

    def read(self, max_events: int) -> tuple[list[EncodedRecord], int]:
        """Up to max_events records from the read position, and the offset after them."""
        out: list[EncodedRecord] = []
        with self.path.open("rb") as fh:
            fh.seek(self._read_offset)
            offset = self._read_offset
            for line in fh:
                if not line.endswith(b"\n"):
                    break
                out.append(EncodedRecord.from_line(line))
                offset += len(line)
                if len(out) >= max_events:
                    break
        return out, offset

    def consume(self, offset: int) -> None:
        self._read_offset = offset
        if self._read_offset >= self._size:
            with self.path.open("rb+") as fh:
                fh.truncate(0)
                os.fsync(fh.fileno())
            self._size = 0
            self._read_offset = 0


class SinkChannel:
    """Feeds one sink from its own thread, applying the delivery policy."""

    def __init__(self, delivery: Delivery) -> None:
        self.sink = delivery.sink
        self.name = delivery.sink.name
        self.policy = DeliveryPolicy(delivery.policy)
        self.capacity = max(1, delivery.buffer_events)
        self._retry_initial = delivery.retry_initial
        self._retry_max = delivery.retry_max
        self._spill: SpillFile | None = None
        if self.policy is DeliveryPolicy.SPILL:
            if delivery.spill_path is None:
                raise AuditConfigError(
                    "the spill policy needs a spill_path", where=f"sinks.{self.name}"
                )
            self._spill = SpillFile(Path(delivery.spill_path), delivery.spill_max_bytes)
        self._queue: deque[Batch] = deque()
        self._queued = 0
        self._cond = threading.Condition()
        self._closing = False
        self._abandon = threading.Event()
        self._thread: threading.Thread | None = None
        # Whether durable callers wait for this sink (the logger may widen it).
        self.owes_acks = self.policy in _HOLDING
        self._refused_lock = threading.Lock()
        self._next_attempt = 0.0
        self.refused = 0
        self.written = 0
        self.dropped = 0
        self.spilled = 0
        self.failures = 0
        self.last_error: str | None = None
        self.failing_since: float | None = None

    @property
    def queued_events(self) -> int:
        return self._queued

    @property
    def writer_alive(self) -> bool:
        """Whether the channel's writer thread is still running (maybe stuck in a write)."""
        return self._thread is not None and self._thread.is_alive()

    def pending_events(self) -> int:
        """Events accepted but not yet stored by the sink (memory and spill file)."""
        spilled = self._spill.pending_events() if self._spill is not None else 0
        return self._queued + spilled

    def check_available(self) -> None:
        """For ``fail_closed``: raise (and count) while the sink's writes are failing."""
        if self.failing_since is None:
            return
        with self._refused_lock:
            self.refused += 1
        wait = float(max(1, math.ceil(self._next_attempt - time.monotonic())))
        raise AuditUnavailableError(
            f"the audit sink cannot store events ({self.last_error}); the event was not "
            f"recorded, retry in {wait:.0f}s",
            retry_after=wait,
            sink=self.name,
        )

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"saasfw-audit-{self.name}", daemon=True
        )
        self._thread.start()

    def offer(self, batch: Batch, deadline: float | None = None) -> bool:
        """Hand a batch over; False when it was dropped (counted) or spilled.

        When this channel owes acknowledgements (``owes_acks``) it gives the batch's
        here unless it queued the batch: ok once spilled (fsynced), not ok once dropped.
        """
        n = len(batch.records)
        with self._cond:
            if self.policy in _HOLDING:
                while self._queued + n > self.capacity and self._queued > 0:
                    timeout = None if deadline is None else deadline - time.monotonic()
                    if self._abandon.is_set() or (timeout is not None and timeout <= 0):
                        return self._drop(batch)
                    self._cond.wait(timeout if timeout is None else min(timeout, 0.5))
            elif self.policy is DeliveryPolicy.SPILL:
                if self._spill is None:  # an internal invariant, not an input check
                    raise RuntimeError("saasfw.audit: self._spill is unset")
                # While the sink fails, batches go to disk at once rather than to memory.
                if self._spill.pending_bytes or self.failing_since or not self._has_room(n):
                    if self._spill.append(batch.records):
                        self.spilled += n
                        if self.owes_acks:
                            batch.done(ok=True)
                    else:
                        self._drop(batch)
                        _log.error(
                            "audit sink %s: spill file full or failing, %d events dropped",
                            self.name,
                            n,
                        )
                    self._cond.notify_all()
                    return False
            elif not self._has_room(n):
                return self._drop(batch)
            self._queue.append(batch)
            self._queued += n
            self._cond.notify_all()
            return True

    def _drop(self, batch: Batch) -> bool:
        self.dropped += len(batch.records)
        if self.owes_acks:
            batch.done(ok=False)  # durable callers learn their event was not stored
        return False

    def last_link(self, producer: str) -> tuple[int, str] | None:
        """The producer's last (sequence, mac) stored by the sink or waiting in the spill
        file, whichever is later: a restart continues the chain after both."""
        stored = self.sink.last_link(producer)
        spilled = self._spill.last_link(producer) if self._spill is not None else None
        if spilled is None or (stored is not None and stored[0] >= spilled[0]):
            return stored
        return spilled

    def _has_room(self, n: int) -> bool:
        # An empty buffer takes any batch, so memory is bounded by capacity + one batch.
        return self._queued == 0 or self._queued + n <= self.capacity

    def _run(self) -> None:
        backoff = self._retry_initial
        while True:
            with self._cond:
                while not self._queue and not self._spill_pending() and not self._closing:
                    self._cond.wait()
                if not self._queue and not self._spill_pending():
                    return
                batch = self._queue[0] if self._queue else None
            if self._abandon.is_set():
                return
            records: Sequence[EncodedRecord]
            offset = 0
            if batch is not None:
                records = batch.records
            else:
                if self._spill is None:  # an internal invariant, not an input check
                    raise RuntimeError("saasfw.audit: self._spill is unset")
                with self._cond:
                    records, offset = self._spill.read(512)
            try:
                self.sink.write(records)
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                    _log.warning("audit sink %s failing: %s", self.name, self.last_error)
                self._next_attempt = time.monotonic() + backoff
                if self._abandon.wait(backoff):
                    return
                backoff = min(backoff * 2, self._retry_max)
                continue
            backoff = self._retry_initial
            self.failing_since = None
            self.written += len(records)
            with self._cond:
                if batch is not None:
                    self._queue.popleft()
                    self._queued -= len(records)
                else:
                    if self._spill is None:  # an internal invariant, not an input check
                        raise RuntimeError("saasfw.audit: self._spill is unset")
                    self._spill.consume(offset)
                self._cond.notify_all()
            if batch is not None and self.owes_acks:
                batch.done(ok=True)

    def _spill_pending(self) -> bool:
        return self._spill is not None and self._spill.pending_bytes > 0

    def close(self, deadline: float) -> int:
        """Drain until the deadline; return how many events are still not stored."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                self._abandon.set()
                with self._cond:
                    self._cond.notify_all()
                self._thread.join(0.5)
        if self.policy in _HOLDING:
            with self._cond:
                stranded = list(self._queue)
            for batch in stranded:
                batch.done(ok=False)  # durable callers learn their event was not stored
        elif self._spill is not None:
            # Keep what the sink did not take: the next start replays the spill file. The
            # queued batches are older than anything already spilled, so they go first.
            with self._cond:
                stranded = list(self._queue)
                self._queue.clear()
                self._queued = 0
                if stranded:
                    records = [r for batch in stranded for r in batch.records]
                    ok = self._spill.prepend(records)
                    if ok:
                        self.spilled += len(records)
                    else:
                        self.dropped += len(records)
                    if self.owes_acks:
                        for batch in stranded:
                            batch.done(ok=ok)
        return self.pending_events()
