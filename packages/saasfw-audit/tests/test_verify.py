"""Acceptance 2: tampering with a 10,000-event log is detected and located by ``verify``."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import AuditLogger, CheckpointWriter, FileSink, Resource, verify_log
from saasfw.audit._chain import ChainKey
from saasfw.audit._encoder import split_chained_line

N = 10_000


class _Log:
    def __init__(self, root: Path, chain_key: bytes, signing: Ed25519PrivateKey) -> None:
        self.root = root
        self.chain_key = chain_key
        self.public_key = signing.public_key()
        self.log = root / "audit.jsonl"
        self.checkpoints = root / "checkpoints.jsonl"
        self.key_file = root / "chain.key"
        self.key_file.write_text(base64.b64encode(chain_key).decode())
        self.pub_file = root / "pub.pem"
        self.pub_file.write_bytes(
            self.public_key.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def lines(self) -> list[bytes]:
        return self.log.read_bytes().splitlines(keepends=True)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> _Log:
    root = tmp_path_factory.mktemp("pristine")
    signing = Ed25519PrivateKey.generate()
    made = _Log(root, os.urandom(32), signing)
    sink = FileSink(made.log, checkpoints=CheckpointWriter(made.checkpoints, signing))
    logger = AuditLogger([sink], producer_id="svc-1", chain_key=made.chain_key)
    logger.start()
    for i in range(N):
        logger.record("order.created", resource=Resource("order", str(i)), details={"amount": i})
    assert logger.close().complete
    return made


@pytest.fixture
def copy(pristine: _Log, tmp_path: Path) -> _Log:
    for p in (pristine.log, pristine.checkpoints, pristine.key_file, pristine.pub_file):
        shutil.copy(p, tmp_path / p.name)
    made = _Log.__new__(_Log)
    made.__dict__.update(pristine.__dict__)
    made.root = tmp_path
    made.log = tmp_path / pristine.log.name
    made.checkpoints = tmp_path / pristine.checkpoints.name
    made.key_file = tmp_path / pristine.key_file.name
    made.pub_file = tmp_path / pristine.pub_file.name
    return made


def _cli(log: _Log) -> tuple[int, dict[str, Any], str]:
    exe = Path(sys.executable).with_name("saasfw-audit")
    proc = subprocess.run(
        [
            str(exe),
            "verify",
            str(log.log),
            "--chain-key-file",
            str(log.key_file),
            "--public-key-file",
            str(log.pub_file),
            "--checkpoints",
            str(log.checkpoints),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def _kinds(report: dict[str, Any]) -> set[tuple[str, int | None]]:
    return {(f["kind"], f["line"]) for f in report["findings"]}


def _rechain(lines: list[bytes], start: int, key: bytes) -> None:
    """Rewrite record ``start`` and re-chain it and everything after it with ``key``."""
    chain = ChainKey(key)
    parts = split_chained_line(lines[start - 1])
    assert parts is not None
    prev = bytes.fromhex(parts[1])
    for i in range(start, len(lines)):
        parts = split_chained_line(lines[i])
        assert parts is not None
        canonical = parts[0]
        if i == start:
            canonical = canonical.replace(b'"amount":', b'"amount":1', 1)
        mac = chain.mac(prev, canonical)
        prev = mac
        lines[i] = canonical[:-1] + b',"mac":"' + mac.hex().encode() + b'"}\n'


def test_untouched_log_verifies_with_progress_on_stderr(copy: _Log) -> None:
    code, report, stderr = _cli(copy)
    assert code == 0
    assert report["ok"] is True
    assert report["records"] == N
    assert report["checkpoints"] >= N // 1000
    assert report["producers"] == {"svc-1": [1, N]}
    assert "verifying [" in stderr
    assert "100%" in stderr


def test_flipped_byte_is_located(copy: _Log) -> None:
    lines = copy.lines()
    target = 4999  # line 5000
    pos = lines[target].index(b"order.created") + 3
    line = bytearray(lines[target])
    line[pos] ^= 0x01
    lines[target] = bytes(line)
    copy.log.write_bytes(b"".join(lines))
    code, report, _ = _cli(copy)
    assert code == 1
    assert _kinds(report) == {("modified", 5000)}


def test_flipped_byte_in_the_mac_is_located(copy: _Log) -> None:
    lines = copy.lines()
    line = bytearray(lines[2000])
    line[-5] = ord("0") if line[-5] != ord("0") else ord("1")
    lines[2000] = bytes(line)
    copy.log.write_bytes(b"".join(lines))
    code, report, _ = _cli(copy)
    assert code == 1
    assert ("modified", 2001) in _kinds(report)
    assert {k for k, _ in _kinds(report)} <= {"modified", "rechained"}


def test_deleted_record_is_located(copy: _Log) -> None:
    lines = copy.lines()
    del lines[3000]  # seq 3001
    copy.log.write_bytes(b"".join(lines))
    code, report, _ = _cli(copy)
    assert code == 1
    [finding] = report["findings"]
    assert finding["kind"] == "deleted"
    assert finding["line"] == 3001
    assert "seq 3001..3001 missing" in finding["message"]


def test_swapped_records_are_located(copy: _Log) -> None:
    lines = copy.lines()
    lines[100], lines[200] = lines[200], lines[100]
    copy.log.write_bytes(b"".join(lines))
    code, report, _ = _cli(copy)
    assert code == 1
    assert _kinds(report) == {("reordered", 101), ("reordered", 201)}


def test_truncated_tail_is_detected_by_the_signed_checkpoint(copy: _Log) -> None:
    lines = copy.lines()
    copy.log.write_bytes(b"".join(lines[:-37]))
    code, report, _ = _cli(copy)
    assert code == 1
    kinds = {f["kind"] for f in report["findings"]}
    assert kinds == {"truncated"}
    assert any(f["seq"] == N and "ends at seq 9963" in f["message"] for f in report["findings"])


def test_torn_tail_is_reported_as_truncated(copy: _Log) -> None:
    data = copy.log.read_bytes()
    copy.log.write_bytes(data[:-40])
    code, report, _ = _cli(copy)
    assert code == 1
    assert ("truncated", N) in _kinds(report)


@pytest.mark.parametrize("who", ["guessed key", "stolen key"])
def test_rechained_suffix_is_located(copy: _Log, who: str) -> None:
    lines = copy.lines()
    key = os.urandom(32) if who == "guessed key" else copy.chain_key
    _rechain(lines, 7000, key)  # record on line 7001 onwards
    copy.log.write_bytes(b"".join(lines))
    code, report, _ = _cli(copy)
    assert code == 1
    findings = report["findings"]
    assert {f["kind"] for f in findings} == {"rechained"}
    # The first signed checkpoint after the rewrite catches it either way, with a range
    # starting right after the last checkpoint that still matched.
    ranges = [
        tuple(int(x) for x in m.group(1, 2))
        for f in findings
        if (m := re.search(r"signed checkpoint: records in seq (\d+)\.\.(\d+)", f["message"]))
    ]
    assert ranges
    first, last = ranges[0]
    assert first <= 7001 <= last
    assert last - first < 1100  # located to within one checkpoint interval
    if who == "guessed key":
        # Without the real key, the chain itself breaks exactly where the rewrite began.
        assert any(f["line"] == 7001 and f["seq"] == 7001 for f in findings)


def test_forged_checkpoint_is_rejected(copy: _Log) -> None:
    cps = copy.checkpoints.read_bytes().splitlines(keepends=True)
    body = json.loads(cps[0])
    body["seq"] = 1
    cps[0] = json.dumps(body).encode() + b"\n"
    copy.checkpoints.write_bytes(b"".join(cps))
    code, report, _ = _cli(copy)
    assert code == 1
    assert _kinds(report) == {("bad_checkpoint", 1)}


def test_verify_without_key_is_a_usage_error(copy: _Log) -> None:
    exe = Path(sys.executable).with_name("saasfw-audit")
    env = {k: v for k, v in os.environ.items() if k != "SAASFW_AUDIT__CHAIN_KEY"}
    proc = subprocess.run(
        [str(exe), "verify", str(copy.log)], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 2
    assert "no chain key" in proc.stderr


def test_library_api_reports_the_same(copy: _Log) -> None:
    progress: list[tuple[int, int]] = []
    record: Callable[[int, int], None] = lambda d, t: progress.append((d, t))  # noqa: E731
    report = verify_log(
        copy.log,
        chain_key=copy.chain_key,
        public_key=copy.public_key,
        checkpoints_path=copy.checkpoints,
        progress=record,
    )
    assert report.ok
    assert progress[-1][0] == progress[-1][1]


def test_an_intact_log_is_verified_in_bounded_memory(copy: _Log) -> None:
    """Streaming: memory does not grow with the log (only checkpointed links are kept)."""
    import tracemalloc

    size = copy.log.stat().st_size
    tracemalloc.start()
    try:
        report = verify_log(
            copy.log,
            chain_key=copy.chain_key,
            public_key=copy.public_key,
            checkpoints_path=copy.checkpoints,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok
    assert peak < size / 10, (peak, size)
