"""The audit logger's public face: configuration, the ports, and the record calls.

``record()`` only reads the ports, stamps a time and an id and queues a
:class:`~saasfw.audit._record.PendingRecord`; the pipeline (``_pipeline.py``) batches,
encrypts, chains (``_encoder.py``) and delivers to the sinks (``_delivery.py``).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from itertools import count
from typing import Any, Literal

from saasfw.audit._chain import ChainKey
from saasfw.audit._crypto import FieldCipher
from saasfw.audit._dedup import DEFAULT_WINDOW, RecentIds
from saasfw.audit._delivery import Delivery, DeliveryPolicy, SinkChannel
from saasfw.audit._encoder import RecordEncoder
from saasfw.audit._errors import (
    AuditClosedError,
    AuditConfigError,
    AuditDeliveryError,
    AuditSinkError,
)
from saasfw.audit._event import (
    Actor,
    ActorProvider,
    CorrelationIdProvider,
    Resource,
    TraceIdsProvider,
    event_id,
)
from saasfw.audit._file import FileSink
from saasfw.audit._pipeline import AuditStats, FlushReport, Pipeline, SinkStats
from saasfw.audit._record import PendingRecord
from saasfw.audit._sink import AuditSink

__all__ = ["AuditLogger", "AuditStats", "FlushReport", "SinkStats", "audit_lifespan"]

Clock = Callable[[], int]
"""Nanoseconds since the epoch (``time.time_ns``)."""

# The file sink anchors the chain: it may hold batches back, never drop them.
_FILE_POLICIES = (DeliveryPolicy.BLOCK, DeliveryPolicy.FAIL_CLOSED, DeliveryPolicy.SPILL)


PRODUCER_ENV = "SAASFW_AUDIT__PRODUCER_ID"
"""Environment variable naming the producer when the code passes no ``producer_id``."""
POD_NAME_ENV = "POD_NAME"
"""Kubernetes' pod name (downward API): the host part of the default producer id."""

_PROCESS_START: tuple[int, int] | None = None


def default_producer_id() -> str:
    """``<pod or host name>-<pid>-<process start>``: unique to this process's life.

    The start is this process's first call, in seconds since the epoch (base 36), plus two
    random bytes, so a container restarted with the same pod name and pid 1 (or a forked
    worker reusing a pid) still starts a chain of its own. Stable for the process's life:
    every logger of the process shares it. ``SAASFW_AUDIT__PRODUCER_ID`` overrides it.
    """
    override = os.environ.get(PRODUCER_ENV, "").strip()
    if override:
        return override
    global _PROCESS_START
    pid = os.getpid()
    if _PROCESS_START is None or _PROCESS_START[0] != pid:  # first call, or a forked child
        _PROCESS_START = (pid, int(time.time()) * 65536 + secrets.randbelow(65536))
    host = os.environ.get(POD_NAME_ENV, "").strip() or socket.gethostname()
    return f"{host}-{pid}-{_base36(_PROCESS_START[1])}"


_made = count(1)


def _fresh_producer_id() -> str:
    """The process's default id; a second logger in the process gets ``<id>.2``, and so on.

    A fresh id has no records anywhere yet, so its logger skips resuming the chain (which
    would scan the whole file log backwards for a producer that cannot be in it).
    """
    n = next(_made)
    base = default_producer_id()
    return base if n == 1 else f"{base}.{n}"


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if not n:
            return out


def _channels(sinks: Sequence[AuditSink | Delivery]) -> list[SinkChannel]:
    """One delivery channel per sink, after checking the sinks' names and policies."""
    if not sinks:
        raise AuditConfigError("at least one sink is needed", where="sinks")
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
    channels = [SinkChannel(d) for d in deliveries]
    for ch in channels:
        if isinstance(ch.sink, FileSink):
            ch.owes_acks = True  # durable calls wait for the chain's anchor, spilled or not
    return channels


class AuditLogger:
    """Records audit events asynchronously to several sinks.

    Args:
        sinks: sinks, each a bare ``AuditSink`` (policy ``block``) or a ``Delivery``.
        producer_id: names this producer's chain and sequence. Default:
            ``$SAASFW_AUDIT__PRODUCER_ID``, else :func:`default_producer_id` (pod or host
            name, pid and process start: a new chain per process). An explicit id must be
            unique among the processes running at a time; the chain then resumes after a
            restart from the sinks' last record of that producer (file, spill, SQL).
        chain_key: the HMAC key of the hash chain; ``None`` disables chaining.
        cipher: encrypts ``encrypted_fields`` of each event's details.
        encrypted_fields: detail keys to encrypt.
        actor_provider, correlation_id_provider, trace_ids_provider: the ports, asked on
            the caller's side at each ``record()`` (kept as public attributes of the same
            names, for integrations such as the ASGI and gRPC middlewares).
        clock: the event time in nanoseconds since the epoch (default ``time.time_ns``).
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
        clock: Clock = time.time_ns,
        queue_size: int = 65_536,
        batch_size: int = 512,
        batch_interval: float = 0.05,
        queue_full: Literal["block", "drop"] = "block",
        durable: bool = False,
        durable_timeout: float = 30.0,
    ) -> None:
        if encrypted_fields and cipher is None:
            raise AuditConfigError(
                "encrypted_fields are set but no keyring is configured", where="encryption"
            )
        explicit = producer_id or os.environ.get(PRODUCER_ENV, "").strip()
        self.producer_id = explicit or _fresh_producer_id()
        self.cipher = cipher
        self.encrypted_fields = tuple(encrypted_fields)
        self.actor_provider = actor_provider
        self.correlation_id_provider = correlation_id_provider
        self.trace_ids_provider = trace_ids_provider
        self.clock = clock
        self.durable = durable
        self.durable_timeout = durable_timeout
        self._ids = count(1)
        encoder = RecordEncoder(
            self.producer_id, ChainKey(chain_key) if chain_key is not None else None
        )
        self._pipeline = Pipeline(
            _channels(sinks),
            encoder,
            cipher=cipher,
            encrypted=self.encrypted_fields,
            queue_size=queue_size,
            batch_size=batch_size,
            batch_interval=batch_interval,
            queue_full_drop=queue_full == "drop",
            resume=bool(explicit),
        )

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Open the sinks, resume an explicit producer id's chain, start the threads."""
        self._pipeline.start()

    @property
    def sinks(self) -> list[AuditSink]:
        """The sinks, in the order given (retention jobs and health checks read them)."""
        return [channel.sink for channel in self._pipeline.channels]

    @property
    def running(self) -> bool:
        """Whether the logger takes events (started and not closing)."""
        return self._pipeline.state == "running"

    def track_relayed(self, window: int = DEFAULT_WINDOW) -> None:
        """Drop a relayed event (an outbox redelivery) whose id is among the last ``window``.

        Seeded from the tail of the first file sink's log, so a redelivery after a crash
        is recognised by the next process. :class:`~saasfw.audit.AuditOutbox` calls this.
        """
        p = self._pipeline
        if p.recent is not None:
            return
        path = next((ch.sink.path for ch in p.channels if isinstance(ch.sink, FileSink)), None)
        p.recent = RecentIds.from_file_log(path, window) if path else RecentIds(window)

    @property
    def _actor(self) -> ActorProvider | None:
        """Deprecated alias of ``actor_provider``, kept while ``grpc.py`` still reads it."""
        return self.actor_provider

    @property
    def relayed_duplicates(self) -> int:
        """Relayed events dropped because they were already stored."""
        return self._pipeline.relayed_duplicates

    @property
    def last_sequence(self) -> int:
        """The sequence number of the last event processed by the pipeline."""
        return self._pipeline.encoder.seq

    def close(self, timeout: float = 10.0) -> FlushReport:
        """Stop accepting events, flush everything within ``timeout`` seconds, close sinks.

        Returns what could not be flushed, per sink; never raises for undelivered events.
        """
        return self._pipeline.close(timeout)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event reached every sink (or its policy); True if so."""
        return self._pipeline.flush(timeout)

    async def __aenter__(self) -> AuditLogger:
        import asyncio

        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.close)

    # -- recording -------------------------------------------------------------------

    def next_event_id(self, ts: int) -> str:
        """A new event id for an event at ``ts`` (ns), unique within this logger."""
        return event_id(ts, next(self._ids))

    def _pending(
        self,
        type: str,
        action: str | None,
        outcome: str,
        resource: Resource | None,
        details: Mapping[str, Any] | None,
        subject: str | None,
        actor: Actor | None,
        correlation_id: str | None,
    ) -> PendingRecord:
        """Stamp an event on the caller's side, asking the ports for what was not given."""
        pipeline = self._pipeline
        if pipeline.state != "running":
            raise AuditClosedError("the audit logger is not running; the event was not recorded")
        for gate in pipeline.gates:
            gate.check_available()  # fail_closed: raises AuditUnavailableError while failing
        ts = self.clock()
        if actor is None and self.actor_provider is not None:
            actor = self.actor_provider()
        if correlation_id is None and self.correlation_id_provider is not None:
            correlation_id = self.correlation_id_provider()
        trace = self.trace_ids_provider() if self.trace_ids_provider is not None else None
        return PendingRecord(
            ts,
            event_id(ts, next(self._ids)),
            type,
            action,
            outcome,
            actor,
            resource,
            correlation_id,
            trace,
            dict(details) if details else None,
            subject,
        )

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
        rec = self._pending(
            type, action, outcome, resource, details, subject, actor, correlation_id
        )
        if durable or (durable is None and self.durable):
            self._record_durably(rec)
        else:
            self._pipeline.enqueue(rec)
        return rec.id

    def _record_durably(self, rec: PendingRecord) -> None:
        done = threading.Event()
        outcome: list[bool] = []

        def ack(ok: bool) -> None:
            outcome.append(ok)
            done.set()

        self._pipeline.enqueue_durable(replace(rec, ack=ack), self.durable_timeout)
        if not done.wait(self.durable_timeout):
            raise AuditDeliveryError(
                f"event {rec.id} was not confirmed stored within {self.durable_timeout}s"
            )
        if not outcome[0]:
            raise AuditDeliveryError(f"event {rec.id} could not be stored before shutdown")

    async def arecord(self, type: str, **kwargs: Any) -> str:
        """``record`` for coroutines: a durable wait suspends instead of blocking the loop."""
        durable = kwargs.pop("durable", None)
        if not (durable or (durable is None and self.durable)):
            return self.record(type, **kwargs)
        rec = self._pending(
            type,
            kwargs.get("action"),
            kwargs.get("outcome", "success"),
            kwargs.get("resource"),
            kwargs.get("details"),
            kwargs.get("subject"),
            kwargs.get("actor"),
            kwargs.get("correlation_id"),
        )
        await self.arecord_pending(rec)
        return rec.id

    async def arecord_pending(self, record: PendingRecord) -> None:
        """Record an event already stamped (an outbox relay's), waiting until it is stored.

        Its ``ack`` is replaced. Raises AuditDeliveryError when it was not confirmed stored
        within ``durable_timeout`` or could not be stored before shutdown.
        """
        import asyncio

        if not self.running:
            raise AuditClosedError("the audit logger is not running; the event was not recorded")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()

        def resolve(ok: bool) -> None:
            if not fut.done():
                fut.set_result(ok)

        def ack(ok: bool) -> None:
            loop.call_soon_threadsafe(resolve, ok)

        await asyncio.to_thread(
            self._pipeline.enqueue_durable, replace(record, ack=ack), self.durable_timeout
        )
        try:
            stored = await asyncio.wait_for(fut, self.durable_timeout)
        except TimeoutError:
            raise AuditDeliveryError(
                f"event {record.id} was not confirmed stored within {self.durable_timeout}s"
            ) from None
        if not stored:
            raise AuditDeliveryError(f"event {record.id} could not be stored before shutdown")

    def erase_subject(self, subject: str, *, timeout: float = 10.0) -> str | None:
        """Crypto-shred a data subject: erase its data key, then audit the erasure.

        Queued events are flushed first so none of the subject's fields is encrypted under a
        fresh key after the erasure. The erasure event carries only the erased key id, never
        the subject. Returns that key id, or None when the subject had no key.

        Raises:
            AuditConfigError: no subject key store is configured.
        """
        if self.cipher is None or self.cipher.subjects is None:
            raise AuditConfigError(
                "crypto-shredding needs a subject key store", where="encryption.subject_keystore"
            )
        self.flush(timeout)
        kid = self.cipher.subjects.erase(subject)
        self.record(
            "audit.subject.erased",
            action="erase",
            outcome="success" if kid else "not_found",
            details={"key_id": kid},
            durable=bool(self._pipeline.owing),
        )
        return kid

    # -- introspection ---------------------------------------------------------------

    def stats(self) -> AuditStats:
        return self._pipeline.stats()

    async def check_health(self, *, failing_for: float = 30.0) -> None:
        """Health check (``async () -> None``): raise if the pipeline died or a sink has
        been failing for more than ``failing_for`` seconds."""
        if self.running and not self._pipeline.thread_alive:
            raise AuditSinkError("the audit pipeline thread is not running")
        now = time.monotonic()
        for ch in self._pipeline.channels:
            since = ch.failing_since
            if since is not None and now - since > failing_for:
                raise AuditSinkError(
                    f"failing for {now - since:.0f}s: {ch.last_error}", where=f"sink {ch.name}"
                )

    def __repr__(self) -> str:
        return (
            f"AuditLogger(producer_id={self.producer_id!r}, state={self._pipeline.state!r}, "
            f"sinks={[ch.name for ch in self._pipeline.channels]!r})"
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
