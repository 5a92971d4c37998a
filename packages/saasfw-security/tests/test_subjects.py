"""Refresh re-validates the subject; revoking a subject ends every token and API key.

Runs on the memory revocation store and on SqlRevocationStore over SQLite and a real
PostgreSQL (its own schema per test); the replica tests use two issuers, each with its own
store instance and engine, over one database.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from saasfw.security import (
    ApiKeyService,
    AuthenticationError,
    MemoryApiKeyStore,
    MemoryRevocationStore,
    SecurityEvents,
    SqlApiKeyStore,
    SqlRevocationStore,
    SubjectState,
    TokenIssuer,
    TokenRevokedError,
)
from saasfw.security.advanced import SecurityEvent
from saasfw.security.tokens import RevocationStore

SECRET = secrets.token_bytes(48)
PEPPER = secrets.token_bytes(32)

StoreFactory = Callable[[], Awaitable[RevocationStore]]


class Directory:
    """The service side of the port: a user table kept in a dict."""

    def __init__(self) -> None:
        self.users: dict[str, SubjectState] = {}
        self.down = False
        self.asked: list[str] = []

    async def current(self, subject: str) -> SubjectState | None:
        self.asked.append(subject)
        if self.down:
            raise ConnectionError("the user table is unreachable")
        return self.users.get(subject)


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Revocation-store instances over one backend (memory: one shared instance)."""
    if request.param == "memory":
        shared = MemoryRevocationStore()

        async def same() -> RevocationStore:
            return shared

        yield same
        return
    pytest.importorskip("sqlalchemy")
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engines: list[Any] = []
    made: list[SqlRevocationStore] = []
    schema: str | None = None
    if request.param == "sqlite":
        pytest.importorskip("aiosqlite")
        url = f"sqlite+aiosqlite:///{tmp_path / 'revocation.db'}"
    else:
        pytest.importorskip("asyncpg")
        url = request.getfixturevalue("postgres_url").replace(
            "postgresql://", "postgresql+asyncpg://"
        )
        schema = f"sec_subj_{secrets.token_hex(6)}"
        admin = create_async_engine(url)
        engines.append(admin)
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    async def make() -> RevocationStore:
        engine = create_async_engine(url, connect_args={"timeout": 60} if schema is None else {})
        engines.append(engine)
        store = SqlRevocationStore(engine, schema=schema)
        if not made:
            await store.create_tables()
        await store.start()
        made.append(store)
        return store

    try:
        yield make
    finally:
        for store in made:
            await store.aclose()
        if schema is not None:
            async with engines[0].begin() as conn:
                await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        for engine in engines:
            await engine.dispose()


def _issuer(
    store: RevocationStore, subjects: Directory | None, events: SecurityEvents | None = None
) -> TokenIssuer:
    return TokenIssuer(
        algorithm="HS256",
        signing_key=SECRET,
        issuer="https://auth.example",
        audience="orders-api",
        revocation=store,
        subjects=subjects,
        events=events,
    )


async def _eventually_refused(attempt: Callable[[], Awaitable[object]]) -> None:
    # Another replica may answer from its NOTIFY-fed cache for a moment: poll, generously.
    deadline = time.monotonic() + 30
    while True:
        try:
            await attempt()
        except TokenRevokedError:
            return
        assert time.monotonic() < deadline, "the revocation never reached the other replica"
        await asyncio.sleep(0.01)


async def test_a_demoted_subject_refreshes_into_its_current_roles_and_tenant(
    stores: StoreFactory,
) -> None:
    directory = Directory()
    directory.users["carol"] = SubjectState(True, frozenset({"admin"}), "acme")
    issuer = _issuer(await stores(), directory)
    login = await issuer.issue("carol", tenant="acme", roles=["admin"], scopes=["orders"])

    directory.users["carol"] = SubjectState(True, frozenset({"viewer"}), "globex")
    rotated = await issuer.refresh(login.refresh_token)
    principal = (await issuer.verifier.verify(rotated.access_token)).principal
    assert principal.roles == frozenset({"viewer"})
    assert principal.tenant == "globex"
    assert principal.claim("scope") == "orders"  # other login claims still carried
    assert rotated.family == login.family

    # No roles and no tenant any more: the claims are dropped, not kept from the login.
    directory.users["carol"] = SubjectState(True)
    bare = (
        await issuer.verifier.verify((await issuer.refresh(rotated.refresh_token)).access_token)
    ).principal
    assert bare.roles == frozenset()
    assert bare.tenant is None
    assert directory.asked == ["carol", "carol"]


@pytest.mark.parametrize("state", ["disabled", "deleted"])
async def test_a_disabled_or_deleted_subject_cannot_refresh_and_its_family_dies(
    stores: StoreFactory, state: str
) -> None:
    events: list[SecurityEvent] = []
    bus = SecurityEvents()
    bus.subscribe(events.append)
    directory = Directory()
    directory.users["dave"] = SubjectState(True, frozenset({"clerk"}), "acme")
    issuer = _issuer(await stores(), directory, bus)
    login = await issuer.issue("dave", tenant="acme", roles=["clerk"])
    rotated = await issuer.refresh(login.refresh_token)

    if state == "disabled":
        directory.users["dave"] = SubjectState(False, frozenset({"clerk"}), "acme")
    else:
        del directory.users["dave"]
    with pytest.raises(TokenRevokedError):
        await issuer.refresh(rotated.refresh_token)
    assert events[-1].type == "auth.token.revoked"
    assert events[-1].outcome == "denied"
    assert events[-1].details["reason"] == f"subject_{state}"
    assert rotated.refresh_token not in repr(events[-1])

    # The family is revoked, not only refused for now: re-enabling does not revive it.
    directory.users["dave"] = SubjectState(True, frozenset({"clerk"}), "acme")
    with pytest.raises(TokenRevokedError):
        await issuer.refresh(rotated.refresh_token)
    with pytest.raises(TokenRevokedError):
        await issuer.verifier.verify(rotated.access_token)
    # A new login of the re-enabled account works.
    again = await issuer.issue("dave", tenant="acme", roles=["clerk"])
    await issuer.refresh(again.refresh_token)


async def test_a_refresh_racing_a_disable_mints_tokens_the_revocation_refuses(
    stores: StoreFactory,
) -> None:
    store = await stores()
    directory = Directory()
    directory.users["dave"] = SubjectState(True, frozenset({"clerk"}), "acme")
    issuer = _issuer(store, directory)

    class DisabledRightAfterTheRead(Directory):
        async def current(self, subject: str) -> SubjectState | None:
            state = await directory.current(subject)  # read: still active
            # The admin disables and revokes now, while this refresh is in flight.
            directory.users[subject] = SubjectState(False)
            await issuer.revoke_subject(subject)
            return state

    login = await issuer.issue("dave", roles=["clerk"])
    issuer.subjects = DisabledRightAfterTheRead()
    late = await issuer.refresh(login.refresh_token)  # finished after the revocation
    with pytest.raises(TokenRevokedError):
        await issuer.verifier.verify(late.access_token)
    issuer.subjects = directory
    with pytest.raises(TokenRevokedError):
        await issuer.refresh(late.refresh_token)


async def test_a_directory_outage_fails_closed_and_leaves_the_token_unspent() -> None:
    directory = Directory()
    directory.users["erin"] = SubjectState(True, frozenset({"auditor"}), "acme")
    issuer = _issuer(MemoryRevocationStore(), directory)
    login = await issuer.issue("erin", roles=["auditor"])
    directory.down = True
    with pytest.raises(ConnectionError):
        await issuer.refresh(login.refresh_token)
    directory.down = False
    # Not a reuse: the failed attempt did not spend the token.
    rotated = await issuer.refresh(login.refresh_token)
    assert (await issuer.verifier.verify(rotated.access_token)).principal.id == "erin"


async def test_without_a_directory_refresh_copies_the_login_claims() -> None:
    issuer = _issuer(MemoryRevocationStore(), None)
    login = await issuer.issue("bob", tenant="acme", roles=["admin"])
    rotated = await issuer.refresh(login.refresh_token)
    principal = (await issuer.verifier.verify(rotated.access_token)).principal
    assert principal.roles == frozenset({"admin"})
    assert principal.tenant == "acme"


async def test_the_directory_can_be_wired_after_construction() -> None:
    issuer = _issuer(MemoryRevocationStore(), None)
    login = await issuer.issue("bob", roles=["admin"])
    directory = Directory()
    issuer.subjects = directory  # e.g. from a lifespan, once the database is up
    with pytest.raises(TokenRevokedError):
        await issuer.refresh(login.refresh_token)


async def test_revoke_subject_ends_every_token_and_api_key_on_every_replica(
    stores: StoreFactory, tmp_path: Path
) -> None:
    directory = Directory()
    directory.users["mallory"] = SubjectState(True, frozenset({"admin"}), "acme")
    directory.users["alice"] = SubjectState(True, frozenset({"clerk"}), "acme")
    replica_a = _issuer(await stores(), directory)
    replica_b = _issuer(await stores(), directory)
    keys = ApiKeyService(MemoryApiKeyStore(), peppers={"p1": PEPPER}, current_pepper="p1")

    logins = [await replica_a.issue("mallory", roles=["admin"]) for _ in range(2)]
    rotated = await replica_b.refresh(logins[1].refresh_token)
    mine = [await keys.create(f"k{i}", principal_id="mallory") for i in range(2)]
    already = await keys.create("old", principal_id="mallory")
    await keys.revoke(already.record.key_id)
    theirs = await keys.create("other", principal_id="alice")
    alice = await replica_a.issue("alice", roles=["clerk"])

    # The service marks the account disabled first, then revokes.
    directory.users["mallory"] = SubjectState(False, frozenset({"admin"}), "acme")
    done = await replica_a.revoke_subject("mallory", api_keys=keys, by="carol")
    assert done.subject == "mallory"
    assert sorted(done.api_keys_revoked) == sorted(k.record.key_id for k in mine)
    assert done.not_before <= time.time()

    for replica in (replica_a, replica_b):
        for pair in (*logins, rotated):
            await _eventually_refused(lambda p=pair, r=replica: r.verifier.verify(p.access_token))
            await _eventually_refused(lambda p=pair, r=replica: r.refresh(p.refresh_token))
    for created in (*mine, already):
        with pytest.raises(AuthenticationError) as refused:
            await keys.verify(created.key)
        assert refused.value.code == "api_key.revoked"

    # Nobody else is touched.
    assert (await keys.verify(theirs.key)).id == "alice"
    await replica_b.verifier.verify(alice.access_token)
    await replica_b.refresh(alice.refresh_token)

    # Re-enabled later: a new login works (the cut only covers tokens issued before it).
    directory.users["mallory"] = SubjectState(True, frozenset({"viewer"}), "acme")
    fresh = await replica_b.issue("mallory", roles=["viewer"])
    await replica_a.verifier.verify(fresh.access_token)
    await replica_a.refresh(fresh.refresh_token)


async def test_revoke_principal_on_the_sql_key_store(tmp_path: Path) -> None:
    pytest.importorskip("aiosqlite")
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    try:
        store = SqlApiKeyStore(engine)
        await store.create_table()
        keys = ApiKeyService(store, peppers={"p1": PEPPER}, current_pepper="p1")
        mine = [await keys.create(f"k{i}", principal_id="mallory") for i in range(3)]
        other = await keys.create("x", principal_id="alice")
        revoked = await keys.revoke_principal("mallory", by="carol")
        assert sorted(revoked) == sorted(k.record.key_id for k in mine)
        assert await keys.revoke_principal("mallory") == []  # nothing live is left
        for created in mine:
            with pytest.raises(AuthenticationError):
                await keys.verify(created.key)
        assert (await keys.verify(other.key)).id == "alice"
    finally:
        await engine.dispose()
