"""AuditSettings builds a working logger and fails closed on unsafe configurations."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import (
    AuditConfigError,
    AuditSettings,
    FieldCipher,
    audit_production_problems,
    verify_log,
)


def _b64(n: int = 32) -> str:
    return base64.b64encode(os.urandom(n)).decode()


def test_settings_build_a_chained_encrypted_logger(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    chain = _b64()
    (tmp_path / "k2").write_text(_b64())
    settings = AuditSettings.model_validate(
        {
            "producer_id": "svc",
            "chain_key": chain,
            "file": {"path": str(tmp_path / "audit.jsonl")},
            "checkpoints": {
                "path": str(tmp_path / "cp.jsonl"),
                "signing_key": base64.b64encode(seed).decode(),
            },
            "encryption": {
                "keys": {"k1": _b64()},
                "key_files": {"k2": str(tmp_path / "k2")},
                "active_key_id": "k2",
                "fields": ["email"],
                "subject_keystore": str(tmp_path / "subjects.json"),
            },
        }
    )
    assert audit_production_problems(settings) == []
    assert chain not in repr(settings)
    logger = settings.build_logger()
    logger.start()
    logger.record("user.created", details={"email": "a@example.com"}, subject="a")
    assert logger.close().complete
    [line] = (tmp_path / "audit.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["details"]["email"].startswith("enc:1:s-")
    cipher = settings.field_cipher()
    assert isinstance(cipher, FieldCipher)
    assert cipher.decrypt_details(rec) == {"email": "a@example.com"}
    key_bytes = settings.chain_key_bytes()
    assert key_bytes is not None
    report = verify_log(
        tmp_path / "audit.jsonl",
        chain_key=key_bytes,
        public_key=key.public_key(),
        checkpoints_path=tmp_path / "cp.jsonl",
    )
    assert report.ok


def test_fails_closed_without_chain_key_or_checkpoints(tmp_path: Path) -> None:
    settings = AuditSettings.model_validate({"file": {"path": str(tmp_path / "a.jsonl")}})
    problems = audit_production_problems(settings)
    assert any("chain_key" in p for p in problems)
    assert any("checkpoints" in p for p in problems)
    with pytest.raises(AuditConfigError, match="chain_key"):
        settings.build_logger()


def test_fails_closed_on_fields_without_keys_and_bad_keys(tmp_path: Path) -> None:
    settings = AuditSettings.model_validate({"encryption": {"fields": ["ssn"]}, "console": True})
    with pytest.raises(AuditConfigError, match="no encryption key"):
        settings.build_logger()
    bad = AuditSettings.model_validate(
        {"encryption": {"keys": {"k1": "c2hvcnQ="}, "active_key_id": "k1"}}
    )
    with pytest.raises(AuditConfigError, match="32 bytes") as info:
        bad.keyring()
    assert "c2hvcnQ" not in str(info.value)  # never echoes the secret
    no_active = AuditSettings.model_validate({"encryption": {"keys": {"k1": _b64()}}})
    with pytest.raises(AuditConfigError, match="active_key_id"):
        no_active.keyring()


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ValueError, match="extra"):
        AuditSettings.model_validate({"fiel": {"path": "x"}})
