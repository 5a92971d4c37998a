"""Issue 16: a producer id per process, one chain per producer, ``verify`` over several logs.

Replicas are real processes appending to their own or to one shared log; one of them is
killed mid-chain. The verifier is run through the installed console script.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import AuditLogger, CheckpointWriter, FileSink, verify_log
from saasfw.audit._chain import ChainKey
from saasfw.audit._logger import default_producer_id
from saasfw.audit._verify import verify_logs

_REPLICA = """
import os, sys, time
from saasfw.audit import AuditLogger, CheckpointWriter, FileSink
from saasfw.audit._chain import load_signing_key

log, cps, count, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sink = FileSink(log, checkpoints=CheckpointWriter(
    cps, load_signing_key(os.environ["SIGNING_KEY"]), every_records=25))
logger = AuditLogger([sink], chain_key=bytes.fromhex(os.environ["CHAIN_KEY"]),
                     durable=True, batch_interval=0.002)
logger.start()
for i in range(count):
    logger.record("order.created", details={"i": i})
os.write(1, (logger.producer_id + " " + str(logger.last_sequence) + "\\n").encode())
if mode == "hang":
    time.sleep(120)  # killed here: no final checkpoint
logger.close()
"""


class _Keys:
    def __init__(self, root: Path) -> None:
        self.chain_key = os.urandom(32)
        self.signing = Ed25519PrivateKey.generate()
        seed = self.signing.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self.env = {
            **os.environ,
            "CHAIN_KEY": self.chain_key.hex(),
            "SIGNING_KEY": seed.hex(),
            "POD_NAME": "orders-7f9c",
        }
        self.env.pop("SAASFW_AUDIT__PRODUCER_ID", None)
        self.key_file = root / "chain.key"
        self.key_file.write_text(base64.b64encode(self.chain_key).decode())
        self.pub_file = root / "pub.pem"
        self.pub_file.write_bytes(
            self.signing.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


def _replica(
    keys: _Keys, log: Path, cps: Path, count: int, mode: str = "close"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _REPLICA, str(log), str(cps), str(count), mode],
        stdout=subprocess.PIPE,
        env=keys.env,
    )


def _finish(proc: subprocess.Popen[bytes], *, kill: bool = False) -> tuple[str, int]:
    assert proc.stdout is not None
    producer, last = proc.stdout.readline().decode().split()
    if kill:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == (-signal.SIGKILL if kill else 0)
    return producer, int(last)


def _cli(keys: _Keys, *args: str | Path) -> tuple[int, dict[str, Any]]:
    exe = Path(sys.executable).with_name("saasfw-audit")
    proc = subprocess.run(
        [
            str(exe),
            "verify",
            *map(str, args),
            "--chain-key-file",
            str(keys.key_file),
            "--public-key-file",
            str(keys.pub_file),
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_default_producer_id_is_per_process_and_names_the_pod(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POD_NAME", "orders-7f9c")
    monkeypatch.delenv("SAASFW_AUDIT__PRODUCER_ID", raising=False)
    mine = default_producer_id()
    assert mine.startswith(f"orders-7f9c-{os.getpid()}-")
    assert default_producer_id() == mine  # stable for the process's life
    assert AuditLogger([FileSink(Path(os.devnull))]).producer_id.startswith(mine)
    code = "from saasfw.audit._logger import default_producer_id as d; print(d())"
    others = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(others) == 2
    assert mine not in others
    assert all(o.startswith("orders-7f9c-") for o in others)
    monkeypatch.setenv("SAASFW_AUDIT__PRODUCER_ID", "orders-blue-0")
    assert default_producer_id() == "orders-blue-0"
    assert AuditLogger([FileSink(Path(os.devnull))], producer_id="explicit").producer_id == (
        "explicit"
    )


def test_two_loggers_of_one_process_do_not_share_a_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chain_key: bytes
) -> None:
    """A second logger with the default id (a reconfiguration, a test) gets an id of its
    own, so its records never collide with the first one's in a shared file."""
    monkeypatch.delenv("SAASFW_AUDIT__PRODUCER_ID", raising=False)
    log = tmp_path / "audit.jsonl"
    ids = []
    for _ in range(2):
        logger = AuditLogger([FileSink(log)], chain_key=chain_key)
        logger.start()
        for i in range(10):
            logger.record("x.y", details={"i": i})
        assert logger.close().complete
        ids.append(logger.producer_id)
    assert ids[0] != ids[1]
    assert ids[1].startswith(default_producer_id())
    report = verify_log(log, chain_key=chain_key)
    assert report.ok, report.findings
    assert report.producers == dict.fromkeys(ids, (1, 10))


def test_replicas_sharing_one_log_each_keep_their_own_chain(tmp_path: Path) -> None:
    keys = _Keys(tmp_path)
    log, cps = tmp_path / "shared.jsonl", tmp_path / "checkpoints.jsonl"
    procs = [_replica(keys, log, cps, 300) for _ in range(3)]
    done = [_finish(p) for p in procs]
    producers = {p for p, _ in done}
    assert len(producers) == 3  # same pod name, three processes, three producers
    lines = [json.loads(line) for line in log.read_bytes().splitlines()]
    assert {r["producer"] for r in lines} == producers
    code, report = _cli(keys, log, "--checkpoints", cps)
    assert code == 0, report["findings"]
    assert report["producers"] == {p: [1, 300] for p in producers}


def test_verify_takes_several_logs_and_flags_a_killed_producer(tmp_path: Path) -> None:
    keys = _Keys(tmp_path)
    a = (tmp_path / "a.jsonl", tmp_path / "a.cp.jsonl")
    b = (tmp_path / "b.jsonl", tmp_path / "b.cp.jsonl")
    clean = _replica(keys, *a, 120)
    killed = _replica(keys, *b, 140, "hang")
    clean_id, _ = _finish(clean)
    killed_id, killed_last = _finish(killed, kill=True)
    code, report = _cli(keys, a[0], b[0], "--checkpoints", a[1], "--checkpoints", b[1])
    assert code == 3  # no tampering; one chain ends without a final checkpoint
    assert report["producers"] == {clean_id: [1, 120], killed_id: [1, 140]}
    [finding] = report["findings"]
    assert finding["kind"] == "unterminated"
    assert (finding["producer"], finding["seq"]) == (killed_id, killed_last) == (killed_id, 140)
    assert finding["file"] == str(b[0])
    assert finding["line"] == 140
    # Tampering in the clean producer's log is still told apart, and located.
    lines = a[0].read_bytes().splitlines(keepends=True)
    lines[59] = lines[59].replace(b'"i":59', b'"i":95')
    a[0].write_bytes(b"".join(lines))
    code, report = _cli(keys, a[0], b[0], "--checkpoints", a[1], "--checkpoints", b[1])
    assert code == 1
    kinds = {(f["kind"], f["producer"], f["seq"]) for f in report["findings"]}
    assert kinds == {("modified", clean_id, 60), ("unterminated", killed_id, 140)}


def test_a_killed_producer_is_followed_by_a_fresh_chain(tmp_path: Path) -> None:
    """A restarted process (same pod name) starts its own chain; both are verified."""
    keys = _Keys(tmp_path)
    log, cps = tmp_path / "audit.jsonl", tmp_path / "cp.jsonl"
    first_id, _ = _finish(_replica(keys, log, cps, 50, "hang"), kill=True)
    second_id, _ = _finish(_replica(keys, log, cps, 30))
    assert first_id != second_id
    report = verify_logs(
        [log],
        chain_key=keys.chain_key,
        public_key=keys.signing.public_key(),
        checkpoints_paths=[cps],
    )
    assert not report.tampered
    assert report.producers == {first_id: (1, 50), second_id: (1, 30)}
    assert [(f.kind, f.producer, f.seq) for f in report.findings] == [
        ("unterminated", first_id, 50)
    ]


def test_a_log_from_before_producer_ids_still_verifies(tmp_path: Path) -> None:
    """Records without a "producer" member form one chain, as old single-producer logs."""
    key = os.urandom(32)
    chain = ChainKey(key)
    prev = bytes(32)
    lines = []
    for seq in range(1, 21):
        canonical = json.dumps(
            {"v": 1, "id": f"e{seq}", "type": "x.y", "seq": seq, "details": {}},
            separators=(",", ":"),
        ).encode()
        prev = chain.mac(prev, canonical)
        lines.append(canonical[:-1] + b',"mac":"' + prev.hex().encode() + b'"}\n')
    log = tmp_path / "old.jsonl"
    log.write_bytes(b"".join(lines))
    report = verify_log(log, chain_key=key)
    assert report.ok, report.findings
    assert report.producers == {"": (1, 20)}
    del lines[7]
    log.write_bytes(b"".join(lines))
    assert [(f.kind, f.seq) for f in verify_log(log, chain_key=key).findings] == [("deleted", 9)]


def test_checkpoints_from_before_the_final_flag_still_verify(
    tmp_path: Path, chain_key: bytes, signing_key: Ed25519PrivateKey
) -> None:
    log = tmp_path / "audit.jsonl"
    logger = AuditLogger([FileSink(log)], producer_id="old", chain_key=chain_key)
    logger.start()
    for i in range(30):
        logger.record("x.y", details={"i": i})
    assert logger.close().complete
    macs = {r["seq"]: r["mac"] for r in map(json.loads, log.read_bytes().splitlines())}
    old_style = CheckpointWriter(tmp_path / "old.jsonl", signing_key)
    old_style._append({}, ("old", 30, macs[30]), None)  # as written before "final" existed
    report = verify_log(
        log,
        chain_key=chain_key,
        public_key=signing_key.public_key(),
        checkpoints_path=tmp_path / "old.jsonl",
    )
    assert report.ok, report.findings
    periodic = CheckpointWriter(tmp_path / "periodic.jsonl", signing_key)
    periodic._append({"final": False}, ("old", 30, macs[30]), None)
    report = verify_log(
        log,
        chain_key=chain_key,
        public_key=signing_key.public_key(),
        checkpoints_path=tmp_path / "periodic.jsonl",
    )
    assert [(f.kind, f.producer, f.seq) for f in report.findings] == [("unterminated", "old", 30)]
    assert "last signed checkpoint (seq 30)" in report.findings[0].message
