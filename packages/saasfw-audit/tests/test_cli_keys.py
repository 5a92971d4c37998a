"""Issue 20: ``saasfw-audit verify`` reads the key encodings it documents, refuses the rest
in one line with exit status 2, and never shows a traceback (run as the console script)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import AuditLogger, CheckpointWriter, FileSink

EXE = Path(sys.executable).with_name("saasfw-audit")


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, Ed25519PrivateKey]:
    root = tmp_path_factory.mktemp("trail")
    # A key whose raw bytes start and end with whitespace: nothing may be stripped from it.
    chain_key = b"\n " + os.urandom(28) + b"\t\n"
    signing = Ed25519PrivateKey.generate()
    sink = FileSink(root / "audit.jsonl", checkpoints=CheckpointWriter(root / "cp.jsonl", signing))
    with_logger = AuditLogger([sink], producer_id="p1", chain_key=chain_key)
    with_logger.start()
    for i in range(20):
        with_logger.record("thing.done", details={"i": i})
    assert with_logger.close().complete
    return root, chain_key, signing


def _verify(root: Path, chain_file: Path, pub_file: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SAASFW_AUDIT__CHAIN_KEY"}
    return subprocess.run(
        [
            str(EXE),
            "verify",
            str(root / "audit.jsonl"),
            "--chain-key-file",
            str(chain_file),
            "--public-key-file",
            str(pub_file),
            "--checkpoints",
            str(root / "cp.jsonl"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _raw_public(signing: Ed25519PrivateKey) -> bytes:
    return signing.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )


@pytest.mark.parametrize("encoding", ["raw", "hex", "base64", "base64url"])
def test_documented_key_encodings_verify(
    trail: tuple[Path, bytes, Ed25519PrivateKey], tmp_path: Path, encoding: str
) -> None:
    root, chain_key, signing = trail
    encode = {
        "raw": lambda b: b,
        "hex": lambda b: b.hex().encode() + b"\n",
        "base64": lambda b: base64.b64encode(b) + b"\n",
        "base64url": lambda b: base64.urlsafe_b64encode(b).rstrip(b"="),
    }[encoding]
    chain_file, pub_file = tmp_path / "chain.key", tmp_path / "pub.key"
    chain_file.write_bytes(encode(chain_key))
    pub_file.write_bytes(encode(_raw_public(signing)))
    proc = _verify(root, chain_file, pub_file)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK: 20 records")


@pytest.mark.parametrize(
    ("which", "content"),
    [
        ("chain", os.urandom(31)),
        ("chain", b"\xff" * 33),
        ("chain", b"not a key at all\n"),
        ("chain", b""),
        ("chain", os.urandom(32).hex().encode()[:-2]),
        ("public", b"\x80" * 40),
        ("public", b"-----BEGIN PUBLIC KEY-----\nbroken\n-----END PUBLIC KEY-----\n"),
    ],
)
def test_anything_else_is_refused_in_one_line_with_status_2(
    trail: tuple[Path, bytes, Ed25519PrivateKey], tmp_path: Path, which: str, content: bytes
) -> None:
    root, chain_key, signing = trail
    chain_file, pub_file = tmp_path / "chain.key", tmp_path / "pub.key"
    chain_file.write_bytes(content if which == "chain" else chain_key)
    pub_file.write_bytes(content if which == "public" else _raw_public(signing))
    proc = _verify(root, chain_file, pub_file)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert str(chain_file if which == "chain" else pub_file) in lines[0]


def test_a_missing_key_file_is_one_line_too(
    trail: tuple[Path, bytes, Ed25519PrivateKey], tmp_path: Path
) -> None:
    root, _, _ = trail
    proc = _verify(root, tmp_path / "absent.key", tmp_path / "absent.pub")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'absent.key'}: No such file or directory"
    ]


@pytest.mark.parametrize("value", ["", "x" * 32, "zz" * 32])
def test_the_key_variable_is_text_only(
    trail: tuple[Path, bytes, Ed25519PrivateKey], value: str
) -> None:
    """32 characters in the variable are not a raw key: the service would refuse them."""
    root, chain_key, _ = trail
    env = {**os.environ, "SAASFW_AUDIT__CHAIN_KEY": value}
    args = [str(EXE), "verify", str(root / "audit.jsonl"), "--no-progress"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "SAASFW_AUDIT__CHAIN_KEY" in line
    env["SAASFW_AUDIT__CHAIN_KEY"] = chain_key.hex()
    ok = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert ok.returncode == 0, ok.stderr


def test_help_names_the_encodings() -> None:
    proc = subprocess.run(
        [str(EXE), "verify", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    text = " ".join(proc.stdout.split())
    assert "base64" in text
    assert "64 hex digits" in text
    assert "exactly 32 raw bytes" in text
    assert "3 only unterminated chains" in text
