"""The JSON Lines file sink: torn-line repair, rotation, and verification across segments."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import AuditLogger, CheckpointWriter, FileSink, verify_log
from saasfw.audit._file import log_segments, repair_torn_tail


def test_torn_last_line_is_cut_and_quarantined(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    removed = repair_torn_tail(log)
    assert removed == len(b'{"c":')
    assert log.read_bytes() == b'{"a":1}\n{"b":2}\n'
    assert (tmp_path / "a.jsonl.torn").read_bytes() == b'{"c":\n'
    assert repair_torn_tail(log) == 0  # idempotent


def test_a_file_of_one_torn_line_becomes_empty(tmp_path: Path) -> None:
    log = tmp_path / "a.jsonl"
    log.write_bytes(b'{"half')
    assert repair_torn_tail(log) == 6
    assert log.read_bytes() == b""


def test_rotation_by_size_keeps_one_verifiable_chain(
    tmp_path: Path, chain_key: bytes, signing_key: Ed25519PrivateKey
) -> None:
    log = tmp_path / "audit.jsonl"
    cps = tmp_path / "cp.jsonl"
    sink = FileSink(log, max_bytes=20_000, checkpoints=CheckpointWriter(cps, signing_key))
    logger = AuditLogger([sink], producer_id="r", chain_key=chain_key, batch_size=50)
    logger.start()
    for i in range(1000):
        logger.record("x.y", details={"i": i})
    assert logger.close().complete
    segments = log_segments(log)
    assert len(segments) > 3
    assert segments[0].name == "audit.jsonl.000001"
    assert segments[-1] == log
    seqs = [json.loads(line)["seq"] for seg in segments for line in seg.read_text().splitlines()]
    assert seqs == list(range(1, 1001))
    report = verify_log(
        log, chain_key=chain_key, public_key=signing_key.public_key(), checkpoints_path=cps
    )
    assert report.ok, report.findings
    # Deleting a whole rotated segment is detected.
    segments[1].unlink()
    report = verify_log(
        log, chain_key=chain_key, public_key=signing_key.public_key(), checkpoints_path=cps
    )
    assert [f.kind for f in report.findings] == ["deleted"]


def test_rotation_by_time(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    sink = FileSink(log, rotate_seconds=0.05)
    logger = AuditLogger([sink], batch_interval=0.01)
    logger.start()
    logger.record("x")
    assert logger.flush()
    import time

    time.sleep(0.1)
    logger.record("y")
    assert logger.close().complete
    assert len(log_segments(log)) == 2


def test_restart_after_a_torn_write_repairs_and_continues_the_chain(
    tmp_path: Path, chain_key: bytes
) -> None:
    log = tmp_path / "audit.jsonl"
    first = AuditLogger([FileSink(log)], producer_id="p", chain_key=chain_key)
    first.start()
    for i in range(10):
        first.record("x", details={"i": i})
    first.close()
    whole = log.read_bytes()
    last_line = whole.splitlines(keepends=True)[-1]
    # A crash in the middle of writing an 11th record leaves half a line behind.
    log.write_bytes(whole + last_line[: len(last_line) // 2])
    sink = FileSink(log)
    second = AuditLogger([sink], producer_id="p", chain_key=chain_key)
    second.start()
    assert sink.repaired_bytes == len(last_line) // 2
    for i in range(10, 20):
        second.record("x", details={"i": i})
    assert second.close().complete
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["seq"] for r in records] == list(range(1, 21))
    assert [r["details"]["i"] for r in records] == list(range(20))
    assert verify_log(log, chain_key=chain_key).ok
