"""The README's ``saasfw-audit verify`` sample runs as written, on two replicas' trails."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import AuditLogger, CheckpointWriter, FileSink, SqlSink

README = Path(__file__).resolve().parents[1] / "README.md"


def _sample() -> str:
    text = README.read_text("utf-8")
    section = text[text.index("### Verifying") :]
    match = re.search(r"^```sh\n(.*?)^```", section, re.S | re.M)
    assert match is not None
    return match.group(1)


def test_the_readme_verify_sample_runs_as_written(tmp_path: Path) -> None:
    chain_key = os.urandom(32)
    (tmp_path / "chain.key").write_bytes(chain_key)  # raw bytes, one documented encoding
    signing = Ed25519PrivateKey.generate()
    (tmp_path / "audit-pub.pem").write_bytes(
        signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    loggers = [
        AuditLogger(
            [
                FileSink(
                    tmp_path / f"audit-{name}.jsonl",
                    checkpoints=CheckpointWriter(tmp_path / f"checkpoints-{name}.jsonl", signing),
                ),
                SqlSink(f"sqlite:///{tmp_path / 'audit.db'}"),
            ],
            producer_id=f"orders-{name}",
            chain_key=chain_key,
        )
        for name in ("a", "b")
    ]
    for lg in loggers:
        lg.start()
    for i in range(50):
        for lg in loggers:
            lg.record("order.created", details={"i": i})
    for lg in loggers:
        assert lg.close().complete
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    proc = subprocess.run(
        ["bash", "-e", "-c", _sample()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("OK")]
    assert lines == [
        "OK: 100 records, 2 signed checkpoints; orders-a seq 1..50, orders-b seq 1..50",
        "OK: 100 records, 0 signed checkpoints; sql:orders-a seq 1..50, sql:orders-b seq 1..50",
    ]
