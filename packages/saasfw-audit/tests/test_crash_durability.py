"""Acceptance 1: nothing acknowledged is lost, by SIGKILL at random moments or at SIGTERM."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import FileSink, verify_log

_DURABLE_CHILD = """
import os, sys, threading
from saasfw.audit import AuditLogger, FileSink, CheckpointWriter, Resource
from saasfw.audit._chain import load_signing_key

log_path, cp_path = sys.argv[1], sys.argv[2]
sink = FileSink(log_path, checkpoints=CheckpointWriter(
    cp_path, load_signing_key(os.environ["SIGNING_KEY"]), every_records=50))
logger = AuditLogger([sink], producer_id="child", durable=True,
                     chain_key=bytes.fromhex(os.environ["CHAIN_KEY"]), batch_interval=0.002)
logger.start()
os.write(1, b"ready %d\\n" % logger.last_sequence)

def work(t):
    for i in range(1_000_000):
        eid = logger.record("order.created", resource=Resource("order", f"{t}-{i}"),
                            details={"n": i, "pad": "x" * (i % 300)})
        os.write(1, b"ack " + eid.encode() + b"\\n")  # only after record() returned

threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(4)]
for th in threads: th.start()
for th in threads: th.join()
"""

_SIGTERM_CHILD = """
import json, os, signal, sys, time
from saasfw.audit import AuditLogger, Delivery, FileSink, AuditSink

class SlowFileSink(FileSink):
    name = "slow"
    def write(self, batch):
        time.sleep(0.01)
        super().write(batch)

def on_term(signum, frame):
    raise SystemExit(0)

signal.signal(signal.SIGTERM, on_term)
fast = FileSink(sys.argv[1])
slow = SlowFileSink(sys.argv[2])
logger = AuditLogger([fast, Delivery(slow, "block", buffer_events=200)], producer_id="term",
                     chain_key=b"k" * 32, batch_size=100, queue_size=20_000)
logger.start()
try:
    for i in range(10_000):
        logger.record("item.imported", details={"i": i})
    os.write(1, b"queued %d\\n" % logger.stats().queue_depth)
    time.sleep(60)
finally:
    start = time.monotonic()
    report = logger.close(timeout=float(sys.argv[3]))
    os.write(1, (json.dumps({"complete": report.complete, "unprocessed": report.unprocessed,
                              "unflushed": dict(report.unflushed),
                              "took": time.monotonic() - start}) + "\\n").encode())
"""


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_sigkill_at_20_random_moments_loses_no_acknowledged_event(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(_DURABLE_CHILD)
    log = tmp_path / "audit.jsonl"
    cps = tmp_path / "checkpoints.jsonl"
    chain_key = os.urandom(32)
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    env = {**os.environ, "CHAIN_KEY": chain_key.hex(), "SIGNING_KEY": seed.hex()}
    rng = random.Random(8)
    acked: set[str] = set()
    repaired_total = 0
    for run in range(20):
        child = subprocess.Popen(
            [sys.executable, str(script), str(log), str(cps)], stdout=subprocess.PIPE, env=env
        )
        assert child.stdout is not None
        ready = child.stdout.readline()
        assert ready.startswith(b"ready"), ready
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL
        run_acks = {
            line.split()[1].decode() for line in out.splitlines() if line.startswith(b"ack ")
        }
        acked |= run_acks
        # Reopen as the next process would: a torn last line is cut, nothing else.
        sink = FileSink(log)
        sink.open()
        repaired_total += sink.repaired_bytes
        sink.close()
        records = _records(log)  # parses end to end
        ids = {str(r["id"]) for r in records}
        missing = acked - ids
        assert not missing, f"run {run}: {len(missing)} acknowledged events lost"
        seqs = [int(str(r["seq"])) for r in records]
        assert seqs == list(range(1, len(seqs) + 1)), f"run {run}: sequence gap or reorder"
    assert len(acked) > 20
    report = verify_log(log, chain_key=chain_key, public_key=key.public_key(), checkpoints_path=cps)
    # Nothing was tampered with; the last run was killed, so its chain has no final
    # checkpoint: reported as such, with the producer and its last sequence number.
    assert not report.tampered, report.findings[:5]
    [killed] = report.findings
    assert (killed.kind, killed.producer, killed.seq) == ("unterminated", "child", seqs[-1])
    assert report.records >= len(acked)


def test_sigterm_flushes_10000_queued_events_through_a_slow_sink(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(_SIGTERM_CHILD)
    fast, slow = tmp_path / "fast.jsonl", tmp_path / "slow.jsonl"
    deadline = 30.0
    child = subprocess.Popen(
        [sys.executable, str(script), str(fast), str(slow), str(deadline)],
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    queued_line = child.stdout.readline()
    assert queued_line.startswith(b"queued"), queued_line
    assert int(queued_line.split()[1]) > 0  # events really were still queued
    child.send_signal(signal.SIGTERM)
    out, _ = child.communicate(timeout=deadline + 15)
    assert child.returncode == 0
    report = json.loads(out.splitlines()[-1])
    assert report["complete"] is True, report
    assert report["unprocessed"] == 0
    assert report["unflushed"] == {}
    assert report["took"] < deadline
    for path in (fast, slow):
        records = _records(path)
        assert [r["details"] for r in records] == [{"i": i} for i in range(10_000)]
