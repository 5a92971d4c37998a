"""Acceptance 5: crypto-shredding a subject in the file, the database and old copies."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import (
    AuditCryptoError,
    AuditLogger,
    CheckpointWriter,
    FieldCipher,
    FileSink,
    Keyring,
    KeyShreddedError,
    SqlSink,
    SubjectKeyStore,
    verify_log,
)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


async def _db_records(url: str) -> list[dict[str, Any]]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT record, details FROM audit_events"))).all()
    finally:
        await engine.dispose()
    out = []
    for record, details in rows:
        rec = json.loads(record)
        assert json.loads(details) == rec["details"]
        out.append(rec)
    return out


def _readable(cipher: FieldCipher, rec: dict[str, Any]) -> bool:
    try:
        cipher.decrypt_details(rec)
    except KeyShreddedError:
        return False
    return True


def test_erased_subject_is_unreadable_everywhere_and_the_chain_still_verifies(
    tmp_path: Path, keyring: Keyring, chain_key: bytes, signing_key: Ed25519PrivateKey
) -> None:
    store_path = tmp_path / "subjects.json"
    cipher = FieldCipher(keyring, SubjectKeyStore(store_path, keyring))
    log = tmp_path / "audit.jsonl"
    cps = tmp_path / "cp.jsonl"
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    logger = AuditLogger(
        [FileSink(log, checkpoints=CheckpointWriter(cps, signing_key)), SqlSink(db_url)],
        producer_id="p",
        chain_key=chain_key,
        cipher=cipher,
        encrypted_fields=["email", "ssn"],
        batch_interval=0.01,
    )
    logger.start()
    for i in range(50):
        for subject in ("alice", "bob"):
            logger.record(
                "profile.updated",
                details={"email": f"{subject}{i}@example.com", "ssn": "078-05-1120", "i": i},
                subject=subject,
            )
    assert logger.flush()
    before = tmp_path / "copy-before-erasure.jsonl"
    shutil.copy(log, before)
    for rec in _records(before):
        assert _readable(cipher, rec)

    kid = logger.erase_subject("alice")
    assert kid is not None
    assert kid.startswith("s-")
    assert logger.close().complete

    db = asyncio.run(_db_records(db_url))
    # A fresh process loading the key store from disk sees the same.
    reloaded = FieldCipher(keyring, SubjectKeyStore(store_path, keyring))
    for source in (_records(log), db, _records(before)):
        profile = [r for r in source if r["type"] == "profile.updated"]
        assert len(profile) == 100
        for c in (cipher, reloaded):
            readable = [c.decrypt_details(r)["email"] for r in profile if _readable(c, r)]
            assert len(readable) == 50
            assert all(e.startswith("bob") for e in readable)
        for rec in profile:
            for field in ("email", "ssn"):
                if rec["details"][field].startswith(f"enc:1:{kid}:"):
                    with pytest.raises(KeyShreddedError):
                        reloaded.decrypt(rec["details"][field], event_id=rec["id"], field=field)

    erased = [r for r in _records(log) if r["type"] == "audit.subject.erased"]
    assert len(erased) == 1
    assert erased[0]["details"] == {"key_id": kid}
    assert "alice" not in json.dumps(erased[0])
    assert "alice" not in store_path.read_text()
    report = verify_log(
        log, chain_key=chain_key, public_key=signing_key.public_key(), checkpoints_path=cps
    )
    assert report.ok, report.findings


def test_ciphertext_moved_to_another_record_or_field_fails(
    file_logger: AuditLogger, cipher: FieldCipher, tmp_path: Path
) -> None:
    file_logger.record("a.b", details={"email": "x@example.com", "ssn": "1"})
    file_logger.record("a.b", details={"email": "y@example.com", "ssn": "2"})
    assert file_logger.flush()
    first, second = _records(tmp_path / "log" / "audit.jsonl")
    assert cipher.decrypt_details(first)["email"] == "x@example.com"
    with pytest.raises(AuditCryptoError, match="moved from another record or field"):
        cipher.decrypt(first["details"]["email"], event_id=second["id"], field="email")
    with pytest.raises(AuditCryptoError):
        cipher.decrypt(first["details"]["email"], event_id=first["id"], field="ssn")
    assert "x@example.com" not in (tmp_path / "log" / "audit.jsonl").read_text()


def test_key_rotation_new_key_encrypts_old_still_decrypts() -> None:
    old = Keyring({"k1": b"\x01" * 32}, "k1")
    env = FieldCipher(old).encrypt(
        "secret", event_id="e", field="f", subject=None, nonce=b"\x00" * 12
    )
    rotated = Keyring({"k1": b"\x01" * 32, "k2": b"\x02" * 32}, "k2")
    c = FieldCipher(rotated)
    assert c.decrypt(env, event_id="e", field="f") == "secret"
    assert c.encrypt(1, event_id="e", field="f", subject=None, nonce=b"\x00" * 12).startswith(
        "enc:1:k2:"
    )
    gone = FieldCipher(Keyring({"k2": b"\x02" * 32}, "k2"))
    with pytest.raises(AuditCryptoError, match="unknown key id"):
        gone.decrypt(env, event_id="e", field="f")


def test_keys_never_appear_in_repr() -> None:
    ring = Keyring({"k1": b"\x07" * 32}, "k1")
    assert "\\x07" not in repr(ring)
    assert "BwcH" not in repr(ring)


def test_many_new_subjects_in_one_batch_all_get_durable_keys(
    tmp_path: Path, keyring: Keyring
) -> None:
    store = tmp_path / "subjects.json"
    log = tmp_path / "a.jsonl"
    logger = AuditLogger(
        [FileSink(log)],
        cipher=FieldCipher(keyring, SubjectKeyStore(store, keyring)),
        encrypted_fields=["email"],
        batch_size=1000,
        batch_interval=0.2,
    )
    logger.start()
    for i in range(200):
        logger.record("signup", details={"email": f"s{i}@example.com"}, subject=f"s{i}")
    assert logger.close().complete
    reloaded = FieldCipher(keyring, SubjectKeyStore(store, keyring))  # as after a restart
    emails = [reloaded.decrypt_details(r)["email"] for r in _records(log)]
    assert emails == [f"s{i}@example.com" for i in range(200)]
    assert len(json.loads(store.read_text())["subjects"]) == 200
