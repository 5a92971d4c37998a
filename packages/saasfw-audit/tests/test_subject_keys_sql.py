"""The shared SQL subject key store on real SQLite and PostgreSQL: several store instances
(as several service instances) on one table, erasure everywhere, tombstones, first-use races.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from saasfw.audit import (
    AuditCryptoError,
    FieldCipher,
    Keyring,
    KeyShreddedError,
    LocalKeyWrapper,
    SqlSubjectKeyStore,
    subject_keys_table,
)
from saasfw.audit._sql import async_url


class Db:
    """One database (and schema) the stores of a test share."""

    def __init__(self, url: str, schema: str | None) -> None:
        self.url = url
        self.schema = schema
        self.stores: list[SqlSubjectKeyStore] = []

    def store(self, wrapper: LocalKeyWrapper, **options: Any) -> SqlSubjectKeyStore:
        made = SqlSubjectKeyStore(self.url, wrapper, schema=self.schema, **options)
        self.stores.append(made)
        return made

    def rows(self) -> list[dict[str, Any]]:
        table = subject_keys_table(schema=self.schema)

        async def read() -> list[dict[str, Any]]:
            engine = create_async_engine(async_url(self.url))
            try:
                async with engine.connect() as conn:
                    result = await conn.execute(select(table))
                    return [dict(r._mapping) for r in result]
            finally:
                await engine.dispose()

        return asyncio.run(read())


def _run_sql(url: str, statement: str) -> None:
    from sqlalchemy import text

    async def run() -> None:
        engine = create_async_engine(async_url(url))
        try:
            async with engine.begin() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        made = Db(f"sqlite:///{tmp_path / 'service.db'}", None)
        try:
            yield made
        finally:
            for store in made.stores:
                store.close()
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"audit_keys_{secrets.token_hex(6)}"
    _run_sql(url, f'CREATE SCHEMA "{schema}"')
    made = Db(url, schema)
    try:
        yield made
    finally:
        for store in made.stores:
            store.close()
        _run_sql(url, f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def wrapper() -> LocalKeyWrapper:
    return LocalKeyWrapper({"kek-1": os.urandom(32)}, "kek-1")


@pytest.fixture
def keyring() -> Keyring:
    return Keyring({"k1": os.urandom(32)}, "k1")


def _encrypt(cipher: FieldCipher, subject: str, value: str, event_id: str) -> str:
    return cipher.encrypt(
        value, event_id=event_id, field="email", subject=subject, nonce=os.urandom(12)
    )


def test_keys_are_shared_wrapped_and_never_name_the_subject(
    db: Db, wrapper: LocalKeyWrapper, keyring: Keyring
) -> None:
    a = FieldCipher(keyring, db.store(wrapper))
    b = FieldCipher(keyring, db.store(wrapper))
    env = _encrypt(a, "customer:acme:ann@example.com", "ann@example.com", "e1")
    assert env.startswith("enc:1:s-")
    # Another instance decrypts with the same key, read from the shared table.
    assert b.decrypt(env, event_id="e1", field="email") == "ann@example.com"
    assert (
        _encrypt(b, "customer:acme:ann@example.com", "x", "e2").split(":")[2] == env.split(":")[2]
    )
    rows = db.rows()
    subject_rows = [r for r in rows if r["kid"] is not None]
    assert len(subject_rows) == 1
    row = subject_rows[0]
    assert row["kid"] == env.split(":")[2]
    assert row["kek_id"] == "kek-1"
    assert len(row["subject_ref"]) == 64
    assert "ann" not in repr(rows)  # a keyed hash, not the subject
    assert row["wrapped"] is not None
    assert len(row["wrapped"]) == 12 + 32 + 16


def test_erasure_on_one_instance_holds_on_the_others_at_once_and_after_a_restart(
    db: Db, wrapper: LocalKeyWrapper, keyring: Keyring
) -> None:
    a = FieldCipher(keyring, db.store(wrapper))
    b = FieldCipher(keyring, db.store(wrapper))
    ann = _encrypt(a, "ann", "ann@example.com", "e1")
    bob = _encrypt(a, "bob", "bob@example.com", "e2")
    assert b.decrypt(ann, event_id="e1", field="email") == "ann@example.com"  # b caches it
    assert b.subjects is not None
    assert a.subjects is not None
    b.subjects.ensure(["ann"])  # and holds a fresh entry for encryption

    kid = a.subjects.erase("ann")
    assert kid == ann.split(":")[2]
    with pytest.raises(KeyShreddedError):
        b.decrypt(ann, event_id="e1", field="email")  # no waiting: every decryption reads the row
    with pytest.raises(KeyShreddedError):
        a.decrypt(ann, event_id="e1", field="email")
    assert b.decrypt(bob, event_id="e2", field="email") == "bob@example.com"
    b.subjects.ensure(["ann"])  # the next batch's read sees the tombstone
    with pytest.raises(KeyShreddedError):
        _encrypt(b, "ann", "ann@example.com", "e3")

    restarted = FieldCipher(keyring, db.store(wrapper))
    with pytest.raises(KeyShreddedError):
        restarted.decrypt(ann, event_id="e1", field="email")
    assert restarted.decrypt(bob, event_id="e2", field="email") == "bob@example.com"
    rows = {r["kid"]: r for r in db.rows() if r["kid"] is not None}
    assert rows[kid]["wrapped"] is None
    assert rows[kid]["kek_id"] is None
    assert rows[kid]["erased_at"] is not None
    # Erasing again is harmless and keeps the first erasure time.
    first_erasure = rows[kid]["erased_at"]
    assert a.subjects.erase("ann") == kid
    again = {r["kid"]: r for r in db.rows() if r["kid"] is not None}
    assert again[kid]["erased_at"] == first_erasure


def test_an_erased_subject_never_gets_a_new_key(
    db: Db, wrapper: LocalKeyWrapper, keyring: Keyring
) -> None:
    a = db.store(wrapper)
    b = db.store(wrapper)
    a.ensure(["carl"])
    before = len(db.rows())
    b.erase("carl")
    # Events of the subject still on their way (outbox, queue) reach the key store later,
    # on any instance: no key is ever minted again.
    for store in (a, b, db.store(wrapper)):
        store.ensure(["carl"])
        with pytest.raises(KeyShreddedError, match="erased"):
            store.cipher_for_subject("carl")
    assert len(db.rows()) == before
    # A subject erased before it ever had a key is tombstoned all the same.
    assert a.erase("dora") is None
    b.ensure(["dora"])
    with pytest.raises(KeyShreddedError):
        b.cipher_for_subject("dora")
    dora = [r for r in db.rows() if r["kid"] is None and r["erased_at"] is not None]
    assert len(dora) == 1


def test_concurrent_first_use_on_several_instances_converges_on_one_key(
    db: Db, wrapper: LocalKeyWrapper
) -> None:
    stores = [db.store(wrapper) for _ in range(4)]
    for store in stores:
        store.ensure(["warm-up"])  # connected and the table exists: the race is on the key
    for round_ in range(5):
        subject = f"racer-{round_}"
        barrier = threading.Barrier(len(stores))
        kids: list[str] = []
        errors: list[BaseException] = []

        def first_use(
            store: SqlSubjectKeyStore,
            subject: str = subject,
            barrier: threading.Barrier = barrier,
            kids: list[str] = kids,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait(timeout=30)
                kids.append(store.cipher_for_subject(subject)[0])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=first_use, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(kids) == len(stores)
        assert len(set(kids)) == 1
    live = [r for r in db.rows() if r["kid"] is not None]
    assert len(live) == 6  # warm-up and five racers: one row each


def test_rotation_of_the_kek_and_a_wrong_kek(db: Db, keyring: Keyring) -> None:
    old = os.urandom(32)
    first = FieldCipher(keyring, db.store(LocalKeyWrapper({"kek-1": old}, "kek-1")))
    env = _encrypt(first, "eve", "eve@example.com", "e1")
    rotated = LocalKeyWrapper({"kek-1": old, "kek-2": os.urandom(32)}, "kek-2")
    second = FieldCipher(keyring, db.store(rotated))
    assert second.decrypt(env, event_id="e1", field="email") == "eve@example.com"
    _encrypt(second, "fay", "fay@example.com", "e2")
    keks = {r["kek_id"] for r in db.rows() if r["kid"] is not None}
    assert keks == {"kek-1", "kek-2"}
    wrong = FieldCipher(keyring, db.store(LocalKeyWrapper({"kek-1": os.urandom(32)}, "kek-1")))
    with pytest.raises(AuditCryptoError, match="does not unwrap"):
        wrong.decrypt(env, event_id="e1", field="email")


def test_an_unreachable_database_fails_closed(tmp_path: Path, wrapper: LocalKeyWrapper) -> None:
    store = SqlSubjectKeyStore(f"sqlite:///{tmp_path / 'missing' / 'no.db'}", wrapper)
    try:
        with pytest.raises(AuditCryptoError, match="subject key store failed"):
            store.ensure(["gus"])
        with pytest.raises(AuditCryptoError):
            store.cipher_for_kid("s-0000000000000000")
    finally:
        store.close()
    assert "missing" in repr(store)
    assert "SqlSubjectKeyStore" in repr(store)


def test_the_table_joins_a_services_own_metadata() -> None:
    from sqlalchemy import MetaData

    md = MetaData()
    table = subject_keys_table(md, schema="orders")
    assert md.tables["orders.saasfw_audit_subject_keys"] is table
    assert [c.name for c in table.primary_key.columns] == ["subject_ref"]
    assert func.count() is not None


def test_a_store_dropped_without_close_closes_its_connections(
    db: Db, wrapper: LocalKeyWrapper
) -> None:
    import gc
    import warnings

    store = SqlSubjectKeyStore(db.url, wrapper, schema=db.schema)
    store.ensure(["hal"])
    assert store.cipher_for_subject("hal")[0].startswith("s-")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del store
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_rewrap_moves_every_live_key_to_the_active_kek(db: Db, keyring: Keyring) -> None:
    old_kek, new_kek = os.urandom(32), os.urandom(32)
    first = FieldCipher(keyring, db.store(LocalKeyWrapper({"kek-1": old_kek}, "kek-1")))
    envs = {who: _encrypt(first, who, f"{who}@example.com", f"e-{who}") for who in "abc"}
    assert first.subjects is not None
    first.subjects.erase("b")
    rotated = db.store(LocalKeyWrapper({"kek-1": old_kek, "kek-2": new_kek}, "kek-2"))
    assert rotated.rewrap(page=1) == 3  # a, c and the subject-reference key
    assert rotated.rewrap() == 0
    assert {r["kek_id"] for r in db.rows() if r["wrapped"] is not None} == {"kek-2"}
    # The old KEK can go: only the new one is configured, every live key still decrypts.
    only_new = FieldCipher(keyring, db.store(LocalKeyWrapper({"kek-2": new_kek}, "kek-2")))
    for who in "ac":
        email = only_new.decrypt(envs[who], event_id=f"e-{who}", field="email")
        assert email == f"{who}@example.com"
    with pytest.raises(KeyShreddedError):
        only_new.decrypt(envs["b"], event_id="e-b", field="email")
