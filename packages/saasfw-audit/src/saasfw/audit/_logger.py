"""The async audit logger: stamp and enqueue on the caller's side, everything else in batches.

``record()`` only reads the ports, stamps a time and an id and appends to a bounded queue.
A pipeline thread takes batches (by size or after ``batch_interval``), assigns the
producer's sequence numbers, encrypts the chosen fields, chains and encodes the records and
hands each batch to every sink's delivery channel.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from itertools import count
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, Literal

from saasfw.audit._chain import GENESIS, ChainKey
from saasfw.audit._crypto import FieldCipher
from saasfw.audit._dedup import DEFAULT_WINDOW, RecentIds, SealedDetails
from saasfw.audit._delivery import Batch, Delivery, DeliveryPolicy, SinkChannel
from saasfw.audit._errors import (
    AuditClosedError,
    AuditConfigError,
    AuditDeliveryError,
    AuditQueueFullError,
    AuditSinkError,
)
from saasfw.audit._event import (
    SCHEMA_VERSION,
    Actor,
    ActorProvider,
    CorrelationIdProvider,
    Resource,
    TraceIdsProvider,
    event_id,
)
from saasfw.audit._file import FileSink
from saasfw.audit._sink import AuditSink, EncodedBatch, EncodedRecord

_log = logging.getLogger("saasfw.audit")
# ASCII-only output: every control character, line separator and non-ASCII character is
# escaped, so no field can break a line. Keys are not sorted: the MAC covers the exact bytes
# written (the verifier never re-serialises), and the record's own keys are built in a
# fixed order.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str).encode
_C_ENCODER = (
    # The stdlib's C encoder built once, not per call as json.dumps does. No circular-
    # reference markers: a cycle raises RecursionError and takes the generic path.
    c_make_encoder(None, str, encode_basestring_ascii, None, ":", ",", False, False, True)
    if c_make_encoder is not None
    else None
)


def _encode_details(details: dict[str, Any]) -> str:
    if _C_ENCODER is None:
        return _ENCODER(details)
    return "".join(_C_ENCODER(details, 0))


_Item = tuple[Any, ...]
_q: Callable[[str], str] = encode_basestring_ascii


def _qn(value: str | None) -> str:
    return "null" if value is None else _q(value)


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


# The file sink anchors the chain: it may hold batches back, never drop them.
_FILE_POLICIES = (DeliveryPolicy.BLOCK, DeliveryPolicy.FAIL_CLOSED, DeliveryPolicy.SPILL)


def _default_producer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class AuditLogger:
    """Records audit events asynchronously to several sinks.

    Args:
        sinks: sinks, each a bare ``AuditSink`` (policy ``block``) or a ``Delivery``.
        producer_id: names this producer's chain and sequence (default: host and pid).
            With a stable id the chain resumes from the first file sink after a restart.
        chain_key: the HMAC key of the hash chain; ``None`` disables chaining.
        cipher: encrypts ``encrypted_fields`` of each event's details.
        encrypted_fields: detail keys to encrypt.
        actor_provider, correlation_id_provider, trace_ids_provider: the ports.
        queue_size: bound of the in-memory queue in front of the pipeline.
        batch_size, batch_interval: a batch is processed when this many events are queued
            or this many seconds have passed.
        queue_full: ``block`` (the record call waits) or ``drop`` (counted) when the queue
            is full.
        durable: record calls return only once every ``block``/``fail_closed`` sink stored
            the event (the file sink fsyncs first).
        durable_timeout: how long a durable call waits before raising AuditDeliveryError.
    """

    def __init__(
        self,
        sinks: Sequence[AuditSink | Delivery],
        *,
        producer_id: str | None = None,
        chain_key: bytes | None = None,
        cipher: FieldCipher | None = None,
        encrypted_fields: Sequence[str] = (),
        actor_provider: ActorProvider | None = None,
        correlation_id_provider: CorrelationIdProvider | None = None,
        trace_ids_provider: TraceIdsProvider | None = None,
        queue_size: int = 65_536,
        batch_size: int = 512,
        batch_interval: float = 0.05,
        queue_full: Literal["block", "drop"] = "block",
        durable: bool = False,
        durable_timeout: float = 30.0,
    ) -> None:
        if not sinks:
            raise AuditConfigError("at least one sink is needed", where="sinks")
        if encrypted_fields and cipher is None:
            raise AuditConfigError(
                "encrypted_fields are set but no keyring is configured", where="encryption"
            )
        deliveries = [s if isinstance(s, Delivery) else Delivery(s) for s in sinks]
        for d in deliveries:
            if isinstance(d.sink, FileSink) and DeliveryPolicy(d.policy) not in _FILE_POLICIES:
                raise AuditConfigError(
                    "a file sink anchors the hash chain and cannot drop batches: use the "
                    "block, fail_closed or spill policy",
                    where="sinks.file",
                )
        names = [d.sink.name for d in deliveries]
        if len(set(names)) != len(names):
            raise AuditConfigError(f"sink names must be unique, got {names}", where="sinks")
        self._channels = [SinkChannel(d) for d in deliveries]
        for ch in self._channels:
            if isinstance(ch.sink, FileSink):
                ch.owes_acks = True  # durable calls wait for the chain's anchor, spilled or not
        self._block_channels = [c for c in self._channels if c.owes_acks]
        self._gates = [c for c in self._channels if c.policy is DeliveryPolicy.FAIL_CLOSED]
        self.producer_id = producer_id or _default_producer()
        self._chain = ChainKey(chain_key) if chain_key is not None else None
        self._cipher = cipher
        self._encrypted = tuple(encrypted_fields)
        self._actor = actor_provider
        self._correlation = correlation_id_provider
        self._trace = trace_ids_provider
        self._maxsize = queue_size
        self._batch_size = batch_size
        self._batch_interval = batch_interval
        self._queue_full_drop = queue_full == "drop"
        self.durable = durable
        self._durable_timeout = durable_timeout
        self._queue: deque[_Item] = deque()
        self._wake = threading.Event()
        self._space = threading.Condition()
        self._ids = count(1)
        self._seq = 0
        self._prev = GENESIS
        self._state = "new"
        self._thread: threading.Thread | None = None
        self._recorded = 0
        self._dropped_queue = 0
        self._failed = 0
        self._in_flight = 0
        self._ts_cache: tuple[int, str] = (-1, "")
        self._actor_cache: dict[int, tuple[Actor, str]] = {}
        self._head_cache: dict[tuple[Any, Any, Any], str] = {}
        self._producer_json = _q(self.producer_id)
        self._recent: RecentIds | None = None
        self._resend: list[bytes] = []
        self.relayed_duplicates = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open the sinks, resume the chain from the first file sink, start the threads."""
        if self._state != "new":
            return
        for ch in self._channels:
            ch.sink.open()
        for ch in self._channels:
            if isinstance(ch.sink, FileSink):
                link = ch.last_link(self.producer_id)
                if link is not None:
                    self._seq, mac_hex = link
                    self._prev = bytes.fromhex(mac_hex) if self._chain else GENESIS
                break
        for ch in self._channels:
            ch.start()
        self._thread = threading.Thread(target=self._run, name="saasfw-audit-pipeline", daemon=True)
        self._state = "running"
        self._thread.start()

    def track_relayed(self, window: int = DEFAULT_WINDOW) -> None:
        """Drop a relayed event (an outbox redelivery) whose id is among the last ``window``.

        Seeded from the tail of the first file sink's log, so a redelivery after a crash
        is recognised by the next process. :class:`~saasfw.audit.AuditOutbox` calls this.
        """
        if self._recent is not None:
            return
        path = next((ch.sink.path for ch in self._channels if isinstance(ch.sink, FileSink)), None)
        self._recent = RecentIds.from_file_log(path, window) if path else RecentIds(window)

    @property
    def last_sequence(self) -> int:
        """The sequence number of the last event processed by the pipeline."""
        return self._seq

    def close(self, timeout: float = 10.0) -> FlushReport:
        """Stop accepting events, flush everything within ``timeout`` seconds, close sinks.

        Returns what could not be flushed, per sink; never raises for undelivered events.
        """
        if self._state != "running":
            self._state = "closed"
            return FlushReport(True, 0)
        deadline = time.monotonic() + timeout
        self._state = "closing"
        self._wake.set()
        with self._space:
            self._space.notify_all()
        if self._thread is None:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.audit: self._thread is unset")
        self._thread.join(max(0.0, deadline - time.monotonic()))
        unprocessed = len(self._queue) + (self._in_flight if self._thread.is_alive() else 0)
        unflushed: dict[str, int] = {}
        for ch in self._channels:
            left = ch.close(deadline)
            if left:
                unflushed[ch.name] = left
        for ch in self._channels:
            if ch._thread is not None and ch._thread.is_alive():
                continue  # still stuck in a write: closing under it would corrupt it
            try:
                ch.sink.close()
            except Exception as exc:
                _log.error("audit sink %s failed to close: %s", ch.name, exc)
        self._state = "closed"
        report = FlushReport(
            complete=not unprocessed and not unflushed,
            unprocessed=unprocessed,
            unflushed=unflushed,
            dropped={ch.name: ch.dropped for ch in self._channels if ch.dropped}
            | ({"queue": self._dropped_queue} if self._dropped_queue else {}),
        )
        if not report.complete:
            _log.error("audit shutdown left events unflushed: %s", report)
        return report

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event reached every sink (or its policy); True if so."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while time.monotonic() < deadline:
            if (
                not self._queue
                and not self._in_flight
                and all(ch.pending_events() == 0 for ch in self._channels)
            ):
                return True
            time.sleep(0.005)
        return False

    async def __aenter__(self) -> AuditLogger:
        import asyncio

        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.close)

    # -- recording -------------------------------------------------------------------

    def record(
        self,
        type: str,
        *,
        action: str | None = None,
        outcome: str = "success",
        resource: Resource | None = None,
        details: Mapping[str, Any] | None = None,
        subject: str | None = None,
        actor: Actor | None = None,
        correlation_id: str | None = None,
        durable: bool | None = None,
    ) -> str:
        """Record one event and return its id.

        Args:
            type: dotted event type, e.g. ``auth.login.failed``.
            action: the verb (default: the last segment of ``type``).
            outcome: ``success``, ``failure``, ``denied``, ...
            resource: what was acted on.
            details: structured details; keys named in ``encrypted_fields`` are encrypted.
            subject: the data subject the encrypted fields are about (crypto-shredding).
            actor: an explicit actor for system jobs; by default the actor port is asked.
            correlation_id: an explicit correlation id (relays, jobs); default: the port.
            durable: override the logger's durable mode for this call.
        """
        if self._state != "running":
            raise AuditClosedError("the audit logger is not running; the event was not recorded")
        for gate in self._gates:
            gate.check_available()  # fail_closed: raises AuditUnavailableError while failing
        ts = time.time_ns()
        eid = event_id(ts, next(self._ids))
        if actor is None and self._actor is not None:
            actor = self._actor()
        corr = correlation_id
        if corr is None and self._correlation is not None:
            corr = self._correlation()
        trace = self._trace() if self._trace is not None else None
        item: _Item = (
            ts,
            eid,
            type,
            action,
            outcome,
            actor,
            resource,
            corr,
            trace,
            dict(details) if details else None,
            subject,
            None,
        )
        if durable or (durable is None and self.durable):
            done = threading.Event()
            outcome_box: list[bool] = []

            def ack(ok: bool) -> None:
                outcome_box.append(ok)
                done.set()

            self._enqueue_durable((*item[:-1], ack))
            if not done.wait(self._durable_timeout):
                raise AuditDeliveryError(
                    f"event {eid} was not confirmed stored within {self._durable_timeout}s"
                )
            if not outcome_box[0]:
                raise AuditDeliveryError(f"event {eid} could not be stored before shutdown")
            return eid
        q = self._queue
        if len(q) >= self._maxsize and not self._make_room():
            return eid
        q.append(item)
        if len(q) >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        return eid

    async def arecord(self, type: str, **kwargs: Any) -> str:
        """``record`` for coroutines: a durable wait suspends instead of blocking the loop."""
        import asyncio

        durable = kwargs.pop("durable", None)
        if not (durable or (durable is None and self.durable)):
            return self.record(type, **kwargs)
        if self._state != "running":
            raise AuditClosedError("the audit logger is not running; the event was not recorded")
        for gate in self._gates:
            gate.check_available()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()

        def resolve(ok: bool) -> None:
            if not fut.done():
                fut.set_result(ok)

        def ack(ok: bool) -> None:
            loop.call_soon_threadsafe(resolve, ok)

        ts = time.time_ns()
        eid = event_id(ts, next(self._ids))
        actor = kwargs.get("actor")
        if actor is None and self._actor is not None:
            actor = self._actor()
        details = kwargs.get("details")
        item: _Item = (
            ts,
            eid,
            type,
            kwargs.get("action"),
            kwargs.get("outcome", "success"),
            actor,
            kwargs.get("resource"),
            kwargs.get("correlation_id")
            or (self._correlation() if self._correlation is not None else None),
            self._trace() if self._trace is not None else None,
            dict(details) if details else None,
            kwargs.get("subject"),
            ack,
        )
        await asyncio.to_thread(self._enqueue_durable, item)
        try:
            stored = await asyncio.wait_for(fut, self._durable_timeout)
        except TimeoutError:
            raise AuditDeliveryError(
                f"event {eid} was not confirmed stored within {self._durable_timeout}s"
            ) from None
        if not stored:
            raise AuditDeliveryError(f"event {eid} could not be stored before shutdown")
        return eid

    def _enqueue_durable(self, item: _Item) -> None:
        deadline = time.monotonic() + self._durable_timeout
        with self._space:
            while len(self._queue) >= self._maxsize:
                if self._state != "running" or time.monotonic() >= deadline:
                    raise AuditQueueFullError("the audit queue stayed full; event not recorded")
                self._space.wait(0.05)
        self._queue.append(item)
        self._wake.set()

    def _make_room(self) -> bool:
        if self._queue_full_drop:
            self._dropped_queue += 1
            return False
        self._wake.set()
        with self._space:
            while len(self._queue) >= self._maxsize:
                if self._state != "running":
                    raise AuditClosedError("the audit logger closed while the queue was full")
                self._space.wait(0.05)
        return True

    def erase_subject(self, subject: str, *, timeout: float = 10.0) -> str | None:
        """Crypto-shred a data subject: erase its data key, then audit the erasure.

        Queued events are flushed first so none of the subject's fields is encrypted under a
        fresh key after the erasure. The erasure event carries only the erased key id, never
        the subject. Returns that key id, or None when the subject had no key.

        Raises:
            AuditConfigError: no subject key store is configured.
        """
        if self._cipher is None or self._cipher.subjects is None:
            raise AuditConfigError(
                "crypto-shredding needs a subject key store", where="encryption.subject_keystore"
            )
        self.flush(timeout)
        kid = self._cipher.subjects.erase(subject)
        self.record(
            "audit.subject.erased",
            action="erase",
            outcome="success" if kid else "not_found",
            details={"key_id": kid},
            durable=bool(self._block_channels),
        )
        return kid

    # -- pipeline --------------------------------------------------------------------

    def _run(self) -> None:
        q = self._queue
        while True:
            if len(q) < self._batch_size and self._state == "running":
                self._wake.wait(self._batch_interval)
            self._wake.clear()
            n = min(len(q), self._batch_size)
            if n == 0:
                if self._state != "running":
                    return
                continue
            items = [q.popleft() for _ in range(n)]
            self._in_flight = n
            with self._space:
                self._space.notify_all()
            try:
                batch = self._process(items)
                if self._resend:
                    self._offer_resend(batch)
                elif not batch.records:  # only relayed events already stored: no write
                    batch.expect(0)
                if batch.records:
                    batch.expect(len(self._block_channels))
                    for ch in self._channels:
                        ch.offer(batch)  # gives the acknowledgement itself if it does not queue
            except Exception:
                self._failed += n
                _log.exception("audit pipeline failed on a batch of %d events", n)
                for item in items:
                    if item[-1] is not None:
                        item[-1](False)
            self._in_flight = 0
            self._recorded += n

    def _ts(self, ts_ns: int) -> str:
        sec, ns = divmod(ts_ns, 1_000_000_000)
        cached_sec, prefix = self._ts_cache
        if sec != cached_sec:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
            self._ts_cache = (sec, prefix)
        return f"{prefix}{ns // 1000:06d}Z"

    def _actor_json(self, actor: Actor) -> str:
        cached = self._actor_cache.get(id(actor))
        if cached is not None and cached[0] is actor:
            return cached[1]
        if len(self._actor_cache) >= 256:
            self._actor_cache.clear()
        encoded = (
            '{"id":'
            + _q(actor.id)
            + ',"kind":'
            + _q(actor.kind)
            + ',"tenant":'
            + _qn(actor.tenant)
            + ',"address":'
            + _qn(actor.address)
            + "}"
        )
        self._actor_cache[id(actor)] = (actor, encoded)
        return encoded

    def _encode_generic(
        self,
        eid: str,
        ts: int,
        typ: Any,
        action: Any,
        outcome: Any,
        actor: Actor | None,
        resource: Resource | None,
        corr: Any,
        trace_id: Any,
        seq: int,
        det: dict[str, Any] | None,
    ) -> str:
        """Same record, for odd inputs: non-string values are rendered with ``str``."""

        def s(v: Any) -> str | None:
            return None if v is None else str(v)

        rec: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "id": eid,
            "ts": self._ts(ts),
            "type": str(typ),
            "action": str(action or str(typ).rpartition(".")[2]),
            "outcome": str(outcome),
            "actor": {k: s(v) for k, v in actor.as_dict().items()} if actor is not None else None,
            "resource": {k: s(v) for k, v in resource.as_dict().items()}
            if resource is not None
            else None,
            "correlation_id": s(corr),
            "trace_id": s(trace_id),
            "producer": self.producer_id,
            "seq": seq,
            "details": {str(k): v for k, v in det.items()} if det else {},
        }
        return _ENCODER(rec)

    def _process(self, items: list[_Item]) -> Batch:
        lines: list[bytes] = []
        append = lines.append
        acks = [it[-1] for it in items if it[-1] is not None]
        if self._recent is not None:
            items = self._unseen(items, self._recent)  # acks stay: they fire once stored
        encrypted = self._encrypted
        cipher = self._cipher
        if cipher is not None and encrypted:
            if cipher.subjects is not None:
                # One fsync of the key store for all of the batch's new subjects.
                new_subjects = {
                    it[10]
                    for it in items
                    if it[10] is not None and it[9] and type(it[9]) is not SealedDetails
                }
                if new_subjects:
                    try:
                        cipher.subjects.ensure(new_subjects)
                    except Exception:
                        _log.exception("audit subject keys could not be created")
            # Relayed events were encrypted when staged (SealedDetails).
            failed = cipher.encrypt_batch(
                [
                    (it[1], it[9], it[10])
                    for it in items
                    if it[9] and type(it[9]) is not SealedDetails
                ],
                encrypted,
                len(items),
            )
            for eid, exc in failed:
                # Fail closed: the fields still in clear were replaced, never stored.
                self._failed += 1
                _log.error("audit fields of event %s could not be encrypted", eid, exc_info=exc)
        chain = self._chain
        chain_copy = chain._base.copy if chain is not None else None
        producer_json = self._producer_json
        actor_cache = self._actor_cache
        head_cache = self._head_cache
        ts_sec, ts_prefix = -1, ""
        first_seq = seq = self._seq + 1
        prev = self._prev
        try:
            for ts, eid, typ, action, outcome, actor, resource, corr, trace, det, _s, _a in items:
                # The record's JSON assembled from escaped parts, inline because this loop is
                # the pipeline's whole cost; _q raises TypeError on anything but a string
                # where a string belongs, and _encode_generic then takes over.
                try:
                    # "type", "action" and "outcome" repeat across events: escaped once.
                    head = head_cache.get((typ, action, outcome))
                    if head is None:
                        head = self._head_json(typ, action, outcome)
                    if actor is None:
                        actor_json = "null"
                    else:
                        cached = actor_cache.get(id(actor))
                        if cached is not None and cached[0] is actor:
                            actor_json = cached[1]
                        else:
                            actor_json = self._actor_json(actor)
                    if resource is None:
                        resource_json = "null"
                    else:
                        rid = resource.id
                        resource_json = (
                            f'{{"type":{_q(resource.type)},'
                            f'"id":{"null" if rid is None else _q(rid)}}}'
                        )
                    sec = ts // 1_000_000_000
                    if sec != ts_sec:
                        ts_sec = sec
                        ts_prefix = time.strftime('"ts":"%Y-%m-%dT%H:%M:%S.', time.gmtime(sec))
                    trace_id = trace[0] if trace else None
                    canonical = (
                        f'{{"v":{SCHEMA_VERSION},"id":"{eid}",'
                        f'{ts_prefix}{ts // 1000 % 1_000_000:06d}Z",'
                        f'{head},"actor":{actor_json},"resource":{resource_json},'
                        f'"correlation_id":{"null" if corr is None else _q(corr)},'
                        f'"trace_id":{"null" if trace_id is None else _q(trace_id)},'
                        f'"producer":{producer_json},"seq":{seq},'
                        f'"details":{_encode_details(det) if det else "{}"}}}'
                    )
                except (TypeError, ValueError, AttributeError, RecursionError):
                    canonical = self._encode_generic(
                        eid,
                        ts,
                        typ,
                        action,
                        outcome,
                        actor,
                        resource,
                        corr,
                        trace[0] if trace else None,
                        seq,
                        det,
                    )
                body = canonical.encode()
                if chain_copy is not None:
                    h = chain_copy()
                    h.update(prev + body)
                    prev = h.finalize()
                    append(b"".join((body[:-1], b',"mac":"', prev.hex().encode(), b'"}\n')))
                else:
                    append(body + b"\n")
                seq += 1
        finally:
            # Only what was encoded counts: the chain continues from the last record made.
            self._seq = seq - 1
            self._prev = prev
        return Batch(EncodedBatch(lines, first_seq, self.producer_id, chain is not None), acks)

    def _unseen(self, items: list[_Item], recent: RecentIds) -> list[_Item]:
        """The items without relayed events already stored (their id is recent).

        A duplicate found in the file log's tail (the previous process died after the file
        stored it) is resent, as the file has it, to the idempotent sinks (SQL), which
        may not have stored it before the crash.
        """
        kept: list[_Item] = []
        for it in items:
            if type(it[9]) is SealedDetails:
                if it[1] in recent:
                    self.relayed_duplicates += 1
                    line = recent.lines.pop(it[1], None)
                    if line is not None:
                        self._resend.append(line)
                    continue
                recent.add(it[1])
            kept.append(it)
        return kept

    def _offer_resend(self, batch: Batch) -> None:
        """Offer the resent lines to the idempotent sinks, ahead of ``batch``.

        When ``batch`` is empty its acknowledgements ride on the resend, so a relay deletes
        the outbox row only once the SQL sink has the event.
        """
        lines, self._resend = self._resend, []
        targets = [ch for ch in self._channels if getattr(ch.sink, "idempotent", False)]
        resend = Batch(
            [EncodedRecord.from_line(line) for line in lines],
            [] if batch.records else batch.acks,
        )
        resend.expect(sum(1 for ch in targets if ch.owes_acks))
        for ch in targets:
            ch.offer(resend)

    def _head_json(self, typ: Any, action: Any, outcome: Any) -> str:
        """The escaped ``"type"``, ``"action"`` and ``"outcome"`` members, cached when all
        three are plain strings (raises TypeError otherwise, for the generic path)."""
        head = (
            f'"type":{_q(typ)},"action":{_q(action or typ.rpartition(".")[2])},'
            f'"outcome":{_q(outcome)}'
        )
        if type(typ) is str and type(outcome) is str and (action is None or type(action) is str):
            if len(self._head_cache) >= 256:
                self._head_cache.clear()
            self._head_cache[(typ, action, outcome)] = head
        return head

    # -- introspection ---------------------------------------------------------------

    def stats(self) -> AuditStats:
        return AuditStats(
            recorded=self._recorded,
            dropped_queue_full=self._dropped_queue,
            failed_encoding=self._failed,
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
                for ch in self._channels
            },
        )

    async def check_health(self, *, failing_for: float = 30.0) -> None:
        """Health check (``async () -> None``): raise if the pipeline died or a sink has
        been failing for more than ``failing_for`` seconds."""
        if self._state == "running" and (self._thread is None or not self._thread.is_alive()):
            raise AuditSinkError("the audit pipeline thread is not running")
        now = time.monotonic()
        for ch in self._channels:
            since = ch.failing_since
            if since is not None and now - since > failing_for:
                raise AuditSinkError(
                    f"failing for {now - since:.0f}s: {ch.last_error}", where=f"sink {ch.name}"
                )

    def __repr__(self) -> str:
        return (
            f"AuditLogger(producer_id={self.producer_id!r}, state={self._state!r}, "
            f"sinks={[ch.name for ch in self._channels]!r})"
        )


@asynccontextmanager
async def audit_lifespan(
    logger: AuditLogger, *, shutdown_timeout: float = 10.0
) -> AsyncIterator[AuditLogger]:
    """Lifespan for FastAPI/Starlette: start the logger, flush and close it at shutdown."""
    import asyncio

    await asyncio.to_thread(logger.start)
    try:
        yield logger
    finally:
        await asyncio.to_thread(logger.close, shutdown_timeout)
