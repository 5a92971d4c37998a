"""The SQL subject key store under the logger and the settings: crypto-shredding end to end.

Two loggers (two instances) on one SQLite database and the shared key table: an erasure on
one makes the subject's fields unreadable through the other, an event of the erased subject
still in flight is recorded with a marker instead of its fields (never under a new key),
and the hash chain still verifies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from saasfw.audit import (
    AuditConfigError,
    AuditLogger,
    AuditSettings,
    CheckpointWriter,
    FieldCipher,
    FileSink,
    Keyring,
    KeyShreddedError,
    LocalKeyWrapper,
    SqlSubjectKeyStore,
    SubjectKeyStore,
    audit_fleet_problems,
    audit_production_problems,
    build_subject_key_store,
    verify_log,
)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _logger(
    tmp_path: Path, name: str, cipher: FieldCipher, chain_key: bytes, key: Ed25519PrivateKey
) -> AuditLogger:
    sink = FileSink(
        tmp_path / name / "audit.jsonl",
        checkpoints=CheckpointWriter(tmp_path / name / "cp.jsonl", key),
    )
    return AuditLogger(
        [sink],
        producer_id=name,
        chain_key=chain_key,
        cipher=cipher,
        encrypted_fields=["email"],
        batch_interval=0.01,
    )


def test_erasure_through_one_logger_shreds_the_subject_for_every_logger(
    tmp_path: Path, chain_key: bytes, signing_key: Ed25519PrivateKey
) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    keyring = Keyring({"k1": os.urandom(32)}, "k1")
    wrapper = LocalKeyWrapper({"kek-1": os.urandom(32)}, "kek-1")
    stores = [SqlSubjectKeyStore(url, wrapper) for _ in range(2)]
    ciphers = [FieldCipher(keyring, s) for s in stores]
    one, two = (
        _logger(tmp_path, name, c, chain_key, signing_key)
        for name, c in zip(("one", "two"), ciphers, strict=True)
    )
    one.start()
    two.start()
    try:
        for i in range(20):
            for lg in (one, two):
                for who in ("ann", "bob"):
                    lg.record("profile.updated", details={"email": f"{who}{i}@x.org"}, subject=who)
        assert one.flush()
        assert two.flush()
        kid = one.erase_subject("ann")
        assert kid is not None
        # An event of the erased subject arriving afterwards (on the other instance).
        two.record("profile.updated", details={"email": "ann-late@x.org"}, subject="ann")
        assert two.flush()
    finally:
        one.close()
        two.close()
    try:
        _check_logs(tmp_path, ciphers, kid, chain_key, signing_key)
    finally:
        for s in stores:
            s.close()


def _check_logs(
    tmp_path: Path,
    ciphers: list[FieldCipher],
    kid: str,
    chain_key: bytes,
    signing_key: Ed25519PrivateKey,
) -> None:
    for name in ("one", "two"):
        log = tmp_path / name / "audit.jsonl"
        records = [
            r
            for r in _records(log)
            if r["type"] == "profile.updated" and r["details"]["email"] != "<encryption failed>"
        ]
        for c in ciphers:
            readable = []
            for rec in records:
                try:
                    readable.append(c.decrypt_details(rec)["email"])
                except KeyShreddedError:
                    assert rec["details"]["email"].startswith(f"enc:1:{kid}:")
            assert len(readable) == 20
            assert all(e.startswith("bob") for e in readable)
        report = verify_log(
            log,
            chain_key=chain_key,
            public_key=signing_key.public_key(),
            checkpoints_path=tmp_path / name / "cp.jsonl",
        )
        assert report.ok, report.findings
    late = [r for r in _records(tmp_path / "two" / "audit.jsonl") if r["type"] == "profile.updated"]
    assert late[-1]["details"]["email"] == "<encryption failed>"
    assert "ann-late" not in (tmp_path / "two" / "audit.jsonl").read_text()


def _settings(tmp_path: Path, **encryption: Any) -> AuditSettings:
    return AuditSettings.model_validate(
        {
            "encryption": {
                "keys": {"k1": SecretStr(os.urandom(32).hex())},
                "active_key_id": "k1",
                "fields": ["email"],
                **encryption,
            },
            "sql": {"url": f"sqlite:///{tmp_path / 'service.db'}"},
        }
    )


def test_settings_select_the_sql_store_with_its_own_kek(tmp_path: Path) -> None:
    kek_file = tmp_path / "kek"
    kek_file.write_text(os.urandom(32).hex())
    settings = _settings(
        tmp_path,
        subject_keys="sql",
        kek_key_files={"kek-2": kek_file},
        active_kek_id="kek-2",
    )
    assert audit_production_problems(settings) == []
    assert audit_fleet_problems(settings) == []
    cipher = settings.field_cipher()
    assert cipher is not None
    assert isinstance(cipher.subjects, SqlSubjectKeyStore)
    try:
        env = cipher.encrypt("a@x.org", event_id="e", field="email", subject="a", nonce=b"\0" * 12)
        again = _settings(
            tmp_path, subject_keys="sql", kek_key_files={"kek-2": kek_file}, active_kek_id="kek-2"
        )
        # The settings' keyring is random per call here: build the store with the first one.
        store = build_subject_key_store(again, keyring=cipher.keyring)
        assert isinstance(store, SqlSubjectKeyStore)
        other = FieldCipher(cipher.keyring, store)
        assert other.decrypt(env, event_id="e", field="email") == "a@x.org"
        store.close()
    finally:
        cipher.subjects.close()


def test_settings_rules_for_the_key_stores(tmp_path: Path) -> None:
    no_db = AuditSettings.model_validate(
        {"encryption": {"keys": {"k1": SecretStr("0" * 64)}, "subject_keys": "sql"}}
    )
    assert any("no database" in p for p in audit_production_problems(no_db))
    both = _settings(tmp_path, subject_keys="sql", subject_keystore=tmp_path / "s.json")
    assert any("remove subject_keystore" in p for p in audit_production_problems(both))
    kek_alone = _settings(tmp_path, subject_keys="sql", kek_keys={"kek": SecretStr("1" * 64)})
    assert any("active_kek_id" in p for p in audit_production_problems(kek_alone))
    with pytest.raises(AuditConfigError, match="active_kek_id"):
        kek_alone.field_cipher()
    file_store = _settings(tmp_path, subject_keystore=tmp_path / "s.json")
    assert audit_production_problems(file_store) == []
    assert any("subject_keys: sql" in p for p in audit_fleet_problems(file_store))
    cipher = file_store.field_cipher()
    assert cipher is not None
    assert isinstance(cipher.subjects, SubjectKeyStore)
    assert build_subject_key_store(_settings(tmp_path)) is None
    file_without_path = _settings(tmp_path, subject_keys="file")
    with pytest.raises(AuditConfigError, match="subject_keystore"):
        file_without_path.field_cipher()


async def test_staging_for_an_erased_subject_stages_nothing(tmp_path: Path) -> None:
    import anyio.to_thread
    from sqlalchemy import MetaData, func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from saasfw.audit import AuditDeliveryError, AuditOutbox

    db = tmp_path / "service.db"
    store = SqlSubjectKeyStore(f"sqlite:///{db}", LocalKeyWrapper({"kek": os.urandom(32)}, "kek"))
    cipher = FieldCipher(Keyring({"k1": os.urandom(32)}, "k1"), store)
    logger = AuditLogger(
        [FileSink(tmp_path / "audit.jsonl")], cipher=cipher, encrypted_fields=["email"]
    )
    outbox = AuditOutbox(logger, metadata=MetaData())
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(outbox.tables.messages.metadata.create_all)
        async with engine.begin() as conn:
            await outbox.stage(conn, "orders.created", details={"email": "a@x.org"}, subject="a")
        await anyio.to_thread.run_sync(store.erase, "a")
        with pytest.raises(AuditDeliveryError, match="could not be encrypted"):
            async with engine.begin() as conn:
                await outbox.stage(
                    conn, "orders.created", details={"email": "a@x.org"}, subject="a"
                )
        async with engine.connect() as conn:
            staged = await conn.scalar(select(func.count()).select_from(outbox.tables.messages))
        assert staged == 1  # the first event only: nothing of the erased subject was staged
    finally:
        await engine.dispose()
        await anyio.to_thread.run_sync(store.close)
