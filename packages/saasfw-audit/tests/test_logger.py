"""The logger's queue, batching, policies, durable mode and shutdown report."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from saasfw.audit import (
    Actor,
    AuditClosedError,
    AuditConfigError,
    AuditDeliveryError,
    AuditLogger,
    AuditSink,
    AuditSinkError,
    Delivery,
    EncodedRecord,
    FileSink,
    Resource,
    audit_lifespan,
)


class GatedSink(AuditSink):
    """A sink that stores into a list, and can be held (slow) or made to fail."""

    def __init__(self, name: str = "gated") -> None:
        self.name = name
        self.records: list[dict[str, Any]] = []
        self.open_gate = threading.Event()
        self.open_gate.set()
        self.fail = False
        self.batches = 0

    def write(self, batch: Sequence[EncodedRecord]) -> None:
        self.open_gate.wait(10)
        if self.fail:
            raise AuditSinkError("down")
        self.batches += 1
        self.records.extend(r.record for r in batch)


def test_events_are_batched_sequenced_and_fan_out(tmp_path: Path) -> None:
    a, b = GatedSink("a"), GatedSink("b")
    logger = AuditLogger([a, b], producer_id="p", batch_size=64, batch_interval=0.01)
    logger.start()
    ids = [logger.record("x.y", details={"i": i}) for i in range(1000)]
    assert logger.close().complete
    assert [r["id"] for r in a.records] == ids
    assert [r["seq"] for r in b.records] == list(range(1, 1001))
    assert a.batches < 1000  # batched
    assert ids == sorted(ids)  # time-ordered ids
    assert logger.stats().recorded == 1000


def test_ports_stamp_actor_correlation_and_trace() -> None:
    sink = GatedSink()
    logger = AuditLogger(
        [sink],
        actor_provider=lambda: Actor("u1", tenant="t1", address="10.0.0.1"),
        correlation_id_provider=lambda: "c1",
        trace_ids_provider=lambda: ("trace1", "span1"),
    )
    logger.start()
    logger.record("doc.deleted", resource=Resource("doc", "9"), outcome="success")
    logger.close()
    [rec] = sink.records
    assert rec["actor"] == {"id": "u1", "kind": "user", "tenant": "t1", "address": "10.0.0.1"}
    assert rec["correlation_id"] == "c1"
    assert rec["trace_id"] == "trace1"
    assert rec["action"] == "deleted"
    assert rec["resource"] == {"type": "doc", "id": "9"}
    assert rec["v"] == 1


async def test_the_ports_are_public_and_the_clock_stamps_the_time() -> None:
    """Integrations read the ports the logger was given; the clock port sets the time."""
    sink = GatedSink()

    def actor() -> Actor:
        return Actor("u2", tenant="t2")

    fixed = 1_700_000_000_123_456_789
    logger = AuditLogger([sink], actor_provider=actor, clock=lambda: fixed, durable=True)
    assert logger.actor_provider is actor
    assert logger.correlation_id_provider is None
    assert logger.trace_ids_provider is None
    assert not logger.running
    async with logger:
        assert logger.running
        await logger.arecord("clock.read")  # durable: returns once stored
        logger.record("clock.read", durable=False)
    assert not logger.running
    assert [r["ts"] for r in sink.records] == ["2023-11-14T22:13:20.123456Z"] * 2
    assert sink.records[0]["actor"]["id"] == "u2"
    first, second = (r["id"] for r in sink.records)
    assert first != second  # same time, distinct ids


def test_queue_full_drop_is_counted_exactly() -> None:
    sink = GatedSink()
    sink.open_gate.clear()
    logger = AuditLogger(
        [Delivery(sink, "block", buffer_events=10)],
        queue_size=50,
        batch_size=10,
        batch_interval=0.001,
        queue_full="drop",
    )
    logger.start()
    for i in range(2000):
        logger.record("x", details={"i": i})
    dropped = logger.stats().dropped_queue_full
    assert dropped > 0
    sink.open_gate.set()
    report = logger.close()
    assert report.complete
    assert len(sink.records) == 2000 - dropped
    assert report.dropped == {"queue": dropped}


def test_queue_full_block_applies_backpressure_without_loss() -> None:
    sink = GatedSink()
    sink.open_gate.clear()
    logger = AuditLogger(
        [Delivery(sink, "block", buffer_events=10)],
        queue_size=20,
        batch_size=10,
        batch_interval=0.001,
    )
    logger.start()
    done = threading.Event()

    def produce() -> None:
        for i in range(200):
            logger.record("x", details={"i": i})
        done.set()

    t = threading.Thread(target=produce)
    t.start()
    assert not done.wait(0.3)  # the producer is held back
    sink.open_gate.set()
    t.join(10)
    assert done.is_set()
    assert logger.close().complete
    assert [r["details"]["i"] for r in sink.records] == list(range(200))


def test_durable_record_returns_only_after_the_sink_stored_it() -> None:
    sink = GatedSink()
    logger = AuditLogger([sink], durable=True, durable_timeout=0.3, batch_interval=1.0)
    logger.start()
    eid = logger.record("x")
    assert sink.records[-1]["id"] == eid  # stored before record() returned
    sink.fail = True
    with pytest.raises(AuditDeliveryError, match="not confirmed"):
        logger.record("y")  # fails closed when it cannot be stored in time
    sink.fail = False
    logger.close()


async def test_arecord_durable_does_not_block_the_loop(tmp_path: Path) -> None:
    sink = GatedSink()
    logger = AuditLogger([sink], durable=True, batch_interval=1.0)
    async with audit_lifespan(logger):
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        sink.open_gate.clear()
        pending = asyncio.create_task(logger.arecord("x"))
        await asyncio.sleep(0.1)
        assert not pending.done()
        assert ticks > 5  # the loop kept running while the event waited for storage
        sink.open_gate.set()
        eid = await pending
        task.cancel()
        assert sink.records[-1]["id"] == eid


def test_shutdown_reports_what_could_not_be_flushed() -> None:
    sink = GatedSink()
    sink.fail = True
    logger = AuditLogger([Delivery(sink, "block", retry_initial=0.01, retry_max=0.02)])
    logger.start()
    for _ in range(25):
        logger.record("x")
    report = logger.close(timeout=0.5)
    assert not report.complete
    assert report.unflushed == {"gated": 25}
    with pytest.raises(AuditClosedError):
        logger.record("x")


async def test_health_check_reports_a_failing_sink() -> None:
    sink = GatedSink()
    sink.fail = True
    logger = AuditLogger([Delivery(sink, "drop", retry_initial=0.01, retry_max=0.02)])
    logger.start()
    logger.record("x")
    await asyncio.sleep(0.2)
    with pytest.raises(AuditSinkError, match="failing for"):
        await logger.check_health(failing_for=0.05)
    sink.fail = False
    assert logger.flush(5)
    await logger.check_health(failing_for=0.05)
    logger.close()


def test_configuration_is_checked() -> None:
    with pytest.raises(AuditConfigError, match="cannot drop batches"):
        AuditLogger([Delivery(FileSink("/tmp/x.jsonl"), "drop")])
    with pytest.raises(AuditConfigError, match="unique"):
        AuditLogger([GatedSink(), GatedSink()])
    with pytest.raises(AuditConfigError, match="no keyring"):
        AuditLogger([GatedSink()], encrypted_fields=["email"])
    with pytest.raises(AuditConfigError, match="spill_path"):
        AuditLogger([Delivery(GatedSink(), "spill")])


def test_chain_resumes_after_restart_with_a_stable_producer(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    for _ in range(3):
        logger = AuditLogger([FileSink(log)], producer_id="svc", chain_key=b"k" * 32)
        logger.start()
        for _ in range(10):
            logger.record("x")
        logger.close()
    seqs = [json.loads(x)["seq"] for x in log.read_text().splitlines()]
    assert seqs == list(range(1, 31))


def test_durable_caller_is_told_when_shutdown_strands_its_event() -> None:
    sink = GatedSink()
    sink.fail = True
    logger = AuditLogger(
        [Delivery(sink, "block", retry_initial=0.01, retry_max=0.02)],
        durable=True,
        durable_timeout=30,
    )
    logger.start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            logger.record("x")
        except AuditDeliveryError as exc:
            errors.append(exc)

    t = threading.Thread(target=call)
    t.start()
    import time

    deadline = time.monotonic() + 5
    while sink.fail and logger.stats().sinks["gated"].failures == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    report = logger.close(timeout=0.3)
    t.join(5)
    assert not t.is_alive()
    assert report.unflushed == {"gated": 1}
    [error] = errors
    assert "could not be stored before shutdown" in str(error)


def test_spill_sink_keeps_undelivered_events_on_disk_across_a_restart(tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    down = GatedSink()
    down.fail = True
    logger = AuditLogger(
        [Delivery(down, "spill", spill_path=spill, retry_initial=0.01, retry_max=0.02)],
        producer_id="sp",
    )
    logger.start()
    for i in range(100):
        logger.record("x", details={"i": i})
    report = logger.close(timeout=0.3)
    assert report.unflushed == {"gated": 100}  # not delivered, but kept in the spill file
    assert not report.dropped
    up = GatedSink()
    again = AuditLogger(
        [Delivery(up, "spill", spill_path=spill)], producer_id="sp", batch_interval=0.01
    )
    again.start()
    assert again.flush(10)
    assert again.close().complete
    assert [r["details"]["i"] for r in up.records] == list(range(100))
