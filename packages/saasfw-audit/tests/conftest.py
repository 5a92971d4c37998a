"""Fixtures shared by saasfw.audit's tests: keys and a started logger over a real file."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import (
    AuditLogger,
    CheckpointWriter,
    FieldCipher,
    FileSink,
    Keyring,
    SubjectKeyStore,
)


@pytest.fixture
def chain_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring({"k1": os.urandom(32)}, "k1")


@pytest.fixture
def cipher(keyring: Keyring, tmp_path: Path) -> FieldCipher:
    return FieldCipher(keyring, SubjectKeyStore(tmp_path / "subjects.json", keyring))


@pytest.fixture
def file_logger(
    tmp_path: Path, chain_key: bytes, signing_key: Ed25519PrivateKey, cipher: FieldCipher
) -> Iterator[AuditLogger]:
    """A started logger: chained file sink with checkpoints, email/ssn encrypted."""
    sink = FileSink(
        tmp_path / "log" / "audit.jsonl",
        checkpoints=CheckpointWriter(tmp_path / "cp" / "checkpoints.jsonl", signing_key),
    )
    logger = AuditLogger(
        [sink],
        producer_id="test",
        chain_key=chain_key,
        cipher=cipher,
        encrypted_fields=["email", "ssn"],
        batch_interval=0.01,
    )
    logger.start()
    yield logger
    logger.close()
