"""Issue 17 on a real full disk: the log lives on a 64 KiB tmpfs that fills up.

Needs root (mount); skipped with the reason otherwise. Nothing is injected: the short
writes and ENOSPC are the kernel's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import (
    AuditLogger,
    AuditUnavailableError,
    CheckpointWriter,
    Delivery,
    FileSink,
    verify_log,
)

from .test_file_faults import parse_all


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_real_full_disk_fail_closed_then_space_returns(
    tiny_disk: Path, tmp_path: Path, chain_key: bytes, signing_key: Ed25519PrivateKey
) -> None:
    ballast = tiny_disk / "ballast"
    ballast.write_bytes(b"\0" * 16384)  # removed later: the space that "returns"
    log = tiny_disk / "audit.jsonl"
    cps = tmp_path / "cp" / "checkpoints.jsonl"  # checkpoints live on another volume
    sink = FileSink(log, checkpoints=CheckpointWriter(cps, signing_key, every_records=50))
    logger = AuditLogger(
        [Delivery(sink, "fail_closed", retry_initial=0.01, retry_max=0.05)],
        producer_id="tiny",
        chain_key=chain_key,
        batch_size=8,
        batch_interval=0.002,
    )
    logger.start()
    acked: list[str] = []
    refused = 0

    def attempt(i: int) -> bool:
        nonlocal refused
        try:
            acked.append(logger.record("doc.saved", details={"i": i, "pad": "x" * 200}))
        except AuditUnavailableError:
            refused += 1
            return False
        return True

    i = 0
    deadline = time.monotonic() + 60
    while attempt(i) or refused < 50:  # fill the disk, then be refused 50 times
        assert time.monotonic() < deadline, logger.stats()
        i += 1
        time.sleep(0.001)
    assert 0 < len(acked) < i
    assert parse_all(log)  # the disk is full: whole records only, and they verify
    assert verify_log(log, chain_key=chain_key).ok

    ballast.unlink()  # space returns; the held batches land and callers are let in again
    while not attempt(i):
        assert time.monotonic() < deadline, logger.stats()
        i += 1
        time.sleep(0.01)
    assert logger.flush(30)
    assert logger.close().complete
    records = parse_all(log)
    assert [r["id"] for r in records] == acked
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    report = verify_log(
        log, chain_key=chain_key, public_key=signing_key.public_key(), checkpoints_path=cps
    )
    assert report.ok, report.findings[:5]
    assert logger.stats().sinks["file"].refused == refused
    assert sink.rolled_back_writes > 0
