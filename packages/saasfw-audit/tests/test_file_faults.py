"""Issue 17: a full disk or an I/O error never leaves a fragment in the file sink's log.

Real files, real logger and verifier; the faults are injected at the OS boundary
(``os.write``/``os.fsync``/``os.ftruncate`` on the log's directory, see _disk_faults).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import (
    AuditLogger,
    AuditSettings,
    AuditUnavailableError,
    CheckpointWriter,
    Delivery,
    FileSink,
    audit_production_problems,
    verify_log,
)
from saasfw.audit._file import log_segments

from ._disk_faults import DiskFaults, inject


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def parse_all(log: Path) -> list[dict[str, Any]]:
    """Every line of the log, parsed; fails on a fragment anywhere.

    A reader can catch an append (or a retry's append and cut-back) in progress, as it can
    with any file being written; a fragment that is still there after a few reads is not
    such a moment.
    """
    for _ in range(200):
        data = log.read_bytes()
        if not data or data.endswith(b"\n"):
            break
        time.sleep(0.005)
    assert not data or data.endswith(b"\n"), "the log ends in a fragment"
    return [json.loads(line) for line in data.splitlines()]


class Rig:
    """A chained, checkpointed file sink in ``tmp/log`` behind a fast-retrying logger."""

    def __init__(self, tmp_path: Path, chain_key: bytes, signing_key: Ed25519PrivateKey) -> None:
        self.log = tmp_path / "log" / "audit.jsonl"
        self.cps = tmp_path / "cp" / "checkpoints.jsonl"
        self.chain_key = chain_key
        self.public_key = signing_key.public_key()
        self.sink = FileSink(self.log, checkpoints=CheckpointWriter(self.cps, signing_key))
        self.log.parent.mkdir(parents=True)

    def logger(self, policy: str = "block", **kwargs: Any) -> AuditLogger:
        delivery = Delivery(
            self.sink, policy, retry_initial=0.01, retry_max=0.05, **kwargs.pop("delivery", {})
        )
        return AuditLogger(
            [delivery],
            producer_id="p",
            chain_key=self.chain_key,
            batch_size=20,
            batch_interval=0.005,
            **kwargs,
        )

    def check(self) -> list[dict[str, Any]]:
        """The log parses end to end, its sequence is gap-free and it verifies."""
        records = parse_all(self.log)
        assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
        report = verify_log(
            self.log,
            chain_key=self.chain_key,
            public_key=self.public_key,
            checkpoints_path=self.cps if self.cps.exists() else None,
        )
        assert report.ok, report.findings[:5]
        assert not self.log.with_name(self.log.name + ".torn").exists()
        return records

    def cli_verify(self) -> str:
        """``saasfw-audit verify`` in its own process, with the keys in files."""
        keys = self.log.parent.parent / "keys"
        keys.mkdir(exist_ok=True)
        (keys / "chain.key").write_text(self.chain_key.hex())
        (keys / "pub.pem").write_bytes(
            self.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "saasfw.audit._cli",
                "verify",
                str(self.log),
                "--chain-key-file",
                str(keys / "chain.key"),
                "--public-key-file",
                str(keys / "pub.pem"),
                "--checkpoints",
                str(self.cps),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.fixture
def rig(tmp_path: Path, chain_key: bytes, signing_key: Ed25519PrivateKey) -> Rig:
    return Rig(tmp_path, chain_key, signing_key)


def fill_disk(faults: DiskFaults, rig: Rig, room: int) -> None:
    faults.capacity = rig.log.stat().st_size + room


def test_full_disk_then_space_returns_block_policy(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = rig.logger("block")
    logger.start()
    ids = [logger.record("order.created", details={"i": i}) for i in range(40)]
    assert logger.flush(30)
    with inject(monkeypatch, rig.log.parent) as faults:
        fill_disk(faults, rig, room=1500)  # a batch and a half of room, then ENOSPC
        ids += [logger.record("order.created", details={"i": i}) for i in range(40, 240)]
        wait_for(lambda: logger.stats().sinks["file"].failures >= 3)
        during = rig.check()  # mid-outage: whole records only, and they verify
        assert rig.sink.rolled_back_writes >= 3
        assert 40 <= len(during) < 240
        faults.capacity = None  # space returns: the retries land by themselves
        assert logger.flush(30)
    assert logger.close().complete
    records = rig.check()
    assert [r["id"] for r in records] == ids
    assert faults.injected > 0
    assert rig.cli_verify().startswith("OK: 240 records")


def test_eio_mid_batch_short_writes_and_a_failed_fsync(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = rig.logger("block")
    logger.start()
    ids: list[str] = []
    with inject(monkeypatch, rig.log.parent) as faults:
        faults.max_chunk = 97  # the kernel takes fewer bytes than asked: not an error
        ids += [logger.record("a.b", details={"i": i}) for i in range(100)]
        assert logger.flush(30)
        assert logger.stats().sinks["file"].failures == 0
        faults.max_chunk = None
        faults.eio_after = 700  # part of a batch lands, then EIO, once
        ids += [logger.record("a.b", details={"i": i}) for i in range(100, 150)]
        assert logger.flush(30)
        faults.fsync_eio = 1  # the bytes were written, the fsync fails: cut back, retried
        ids += [logger.record("a.b", details={"i": i}) for i in range(150, 200)]
        assert logger.flush(30)
        assert logger.stats().sinks["file"].failures == 2
    assert logger.close().complete
    assert [r["id"] for r in rig.check()] == ids
    assert rig.sink.rolled_back_writes == 2
    assert rig.cli_verify().startswith("OK: 200 records")


def test_a_failed_rollback_is_finished_before_the_next_append(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = rig.logger("block")
    logger.start()
    ids = [logger.record("a.b", details={"i": i}) for i in range(30)]
    assert logger.flush(30)
    with inject(monkeypatch, rig.log.parent) as faults:
        faults.eio_after = 300
        faults.truncate_eio = 2  # the cut-back fails too, and once more before the retry
        ids += [logger.record("a.b", details={"i": i}) for i in range(30, 80)]
        assert logger.flush(30)
        assert logger.stats().sinks["file"].failures == 2
    assert logger.close().complete
    assert [r["id"] for r in rig.check()] == ids


def test_checkpoint_volume_full_does_not_duplicate_records(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, signing_key: Ed25519PrivateKey
) -> None:
    rig.sink.checkpoints = CheckpointWriter(rig.cps, signing_key, every_records=10)
    logger = rig.logger("block")
    logger.start()
    ids = [logger.record("a.b", details={"i": i}) for i in range(30)]
    assert logger.flush(30)
    with inject(monkeypatch, rig.cps.parent) as faults:
        faults.capacity = 0  # the checkpoints' volume is full; the log's is not
        ids += [logger.record("a.b", details={"i": i}) for i in range(30, 90)]
        assert logger.flush(30)
        assert rig.sink.checkpoint_failures > 0
        assert logger.stats().sinks["file"].failures == 0
        faults.capacity = None
    assert logger.close().complete  # the shutdown checkpoint signs the head
    assert [r["id"] for r in rig.check()] == ids


def test_full_disk_fail_closed_refuses_callers_and_counts_them(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = rig.logger("fail_closed")
    logger.start()
    acked = [logger.record("order.created", details={"i": i}) for i in range(40)]
    assert logger.flush(30)
    errors: list[AuditUnavailableError] = []

    def attempt(i: int) -> bool:
        try:
            acked.append(logger.record("order.created", details={"i": i}))
        except AuditUnavailableError as exc:
            errors.append(exc)
            return False
        return True

    with inject(monkeypatch, rig.log.parent) as faults:
        fill_disk(faults, rig, room=1500)
        i = 40
        while logger.stats().sinks["file"].failures == 0:
            attempt(i)  # accepted until the sink's first failed write is seen
            i += 1
            time.sleep(0.001)
        for n in range(i, i + 100):
            assert not attempt(n)  # the outage: every caller is told, nothing is queued
        i += 100
        rig.check()
        faults.capacity = None  # space returns; the held batches land, then callers resume
        deadline = time.monotonic() + 30
        while not attempt(i):
            assert time.monotonic() < deadline
            i += 1
            time.sleep(0.01)
        acked += [logger.record("order.created", details={"i": n}) for n in range(i, i + 20)]
        assert logger.flush(30)
    assert logger.close().complete
    assert [r["id"] for r in rig.check()] == acked  # every accepted event, nothing else
    assert rig.cli_verify().startswith(f"OK: {len(acked)} records")
    assert len(errors) >= 100
    assert logger.stats().sinks["file"].refused == len(errors)
    assert {(e.sink, e.retry_after >= 1, "ENOSPC" in e.detail) for e in errors} == {
        ("file", True, True)
    }


def test_durable_fail_closed_caller_gets_a_typed_error_during_the_outage(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = rig.logger("fail_closed", durable=True)
    logger.start()
    first = logger.record("a.b")
    with inject(monkeypatch, rig.log.parent) as faults:
        faults.capacity = 0
        held: list[str] = []
        # Accepted just before the outage is noticed: held and retried, never refused later.
        caller = threading.Thread(target=lambda: held.append(logger.record("a.b")))
        caller.start()
        wait_for(lambda: logger.stats().sinks["file"].failures > 0)
        with pytest.raises(AuditUnavailableError):
            logger.record("a.b")
        with pytest.raises(AuditUnavailableError):
            asyncio.run(logger.arecord("a.b"))
        assert caller.is_alive()  # still waiting for its fsync
        faults.capacity = None
        caller.join(30)
        assert not caller.is_alive()
    last = logger.record("a.b")
    assert logger.close().complete
    assert [r["id"] for r in rig.check()] == [first, *held, last]
    assert logger.stats().sinks["file"].refused == 2


def test_settings_default_the_file_sink_to_fail_closed(tmp_path: Path) -> None:
    settings = AuditSettings.model_validate(
        {"integrity": False, "file": {"path": str(tmp_path / "a.jsonl")}}
    )
    [delivery] = settings.build_sinks()
    assert delivery.policy == "fail_closed"


def spill_lines(path: Path) -> list[dict[str, Any]]:
    return parse_all(path) if path.exists() else []


def test_full_disk_spill_policy_sends_the_outage_to_the_fallback_file(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spill = tmp_path / "other-volume" / "spill.jsonl"
    logger = rig.logger("spill", delivery={"spill_path": spill})
    logger.start()
    acked = [logger.record("order.created", details={"i": i}) for i in range(40)]
    assert logger.flush(30)
    with inject(monkeypatch, rig.log.parent) as faults:
        fill_disk(faults, rig, room=1500)
        for i in range(40, 240):
            acked.append(logger.record("order.created", details={"i": i}))
            time.sleep(0.001)

        def settled() -> bool:
            s = logger.stats()
            f = s.sinks["file"]
            return s.queue_depth == 0 and f.written - 40 + f.pending + f.spilled == 200

        wait_for(settled)
        stats = logger.stats().sinks["file"]
        assert stats.failures > 0
        assert stats.spilled > 0
        assert stats.dropped == 0
        in_file = rig.check()  # mid-outage: whole records only, and they verify
        in_spill = spill_lines(spill)
        assert len(in_spill) == stats.spilled  # the counter is exactly what the fallback got
        assert [r["seq"] for r in in_spill] == list(
            range(in_spill[0]["seq"], in_spill[0]["seq"] + len(in_spill))
        )
        assert len(in_file) + stats.pending + len(in_spill) == 240
        faults.capacity = None
        assert logger.flush(30)
    assert logger.close().complete
    assert [r["id"] for r in rig.check()] == acked
    assert spill.stat().st_size == 0  # replayed into the log and emptied
    assert rig.cli_verify().startswith("OK: 240 records")


def test_spill_kept_across_a_restart_during_the_outage_is_replayed_in_order(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spill = tmp_path / "other-volume" / "spill.jsonl"
    logger = rig.logger("spill", delivery={"spill_path": spill})
    logger.start()
    acked = [logger.record("a.b", details={"i": i}) for i in range(20)]
    assert logger.flush(30)
    with inject(monkeypatch, rig.log.parent) as faults:
        faults.capacity = rig.log.stat().st_size  # full
        for i in range(20, 120):
            acked.append(logger.record("a.b", details={"i": i}))
            time.sleep(0.001)
        wait_for(lambda: logger.stats().sinks["file"].spilled > 0)
        report = logger.close(timeout=0.5)  # the disk is still full at shutdown
        assert report.unflushed == {"file": 100}  # kept in the spill file, none dropped
        assert not report.dropped
    # The next process starts after space returned: the spill is replayed first and the
    # chain continues after its last record.
    sink = FileSink(rig.log, checkpoints=rig.sink.checkpoints)
    rig.sink = sink
    again = rig.logger("spill", delivery={"spill_path": spill})
    again.start()
    acked += [again.record("a.b", details={"i": i}) for i in range(120, 140)]
    assert again.flush(30)
    assert again.close().complete
    assert [r["id"] for r in rig.check()] == acked


def test_durable_call_returns_once_its_event_is_fsynced_in_the_spill_file(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spill = tmp_path / "other-volume" / "spill.jsonl"
    logger = rig.logger("spill", durable=True, delivery={"spill_path": spill})
    logger.start()
    acked = [logger.record("a.b")]
    with inject(monkeypatch, rig.log.parent) as faults:
        faults.capacity = 0
        held: list[str] = []
        caller = threading.Thread(target=lambda: held.append(logger.record("a.b")))
        caller.start()  # its batch is being retried when the failure is noticed
        wait_for(lambda: logger.stats().sinks["file"].failures > 0)
        spilled = [logger.record("a.b") for _ in range(5)]  # return: in the spill, fsynced
        assert [r["id"] for r in spill_lines(spill)] == spilled
        faults.capacity = None
        caller.join(30)
        assert not caller.is_alive()
    assert logger.close().complete
    assert [r["id"] for r in rig.check()] == [*acked, *held, *spilled]


def test_a_rotation_that_cannot_create_the_new_file_reopens_on_the_retry(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.sink.max_bytes = 3000
    logger = rig.logger("block")
    logger.start()
    ids = [logger.record("a.b", details={"i": i}) for i in range(30)]
    assert logger.flush(30)
    with inject(monkeypatch, rig.log.parent) as faults:
        faults.create_enospc = 2  # the rotated file is renamed; its successor cannot be made
        ids += [logger.record("a.b", details={"i": i}) for i in range(30, 80)]
        assert logger.flush(30)
        assert faults.injected == 2
        assert logger.stats().sinks["file"].failures == 2
    assert logger.close().complete
    segments = log_segments(rig.log)
    assert len(segments) > 2
    records = [r for seg in segments for r in parse_all(seg)]
    assert [r["id"] for r in records] == ids
    assert [r["seq"] for r in records] == list(range(1, 81))
    assert rig.cli_verify().startswith("OK: 80 records")


def test_a_file_sink_spilling_without_a_spill_path_is_a_production_problem(
    tmp_path: Path,
) -> None:
    settings = AuditSettings.model_validate(
        {"integrity": False, "file": {"path": str(tmp_path / "a.jsonl"), "policy": "spill"}}
    )
    assert audit_production_problems(settings) == [
        "file.policy is spill but file.spill_path is not set"
    ]
