"""SqlRevocationStore: the RevocationStore contract on SQLite and a real PostgreSQL.

Each PostgreSQL test works in its own schema. Covers the contract shared with the memory
store, the atomic ``mark_used`` race between two instances, survival across a restart,
refresh-reuse detection and logout across two issuers, and fail-closed checks and writes
when the database is unreachable.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from saasfw.security import (
    SecurityUnavailableError,
    SqlRevocationStore,
    TokenIssuer,
    TokenReuseError,
    TokenRevokedError,
)

pytest.importorskip("sqlalchemy")
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

SECRET = secrets.token_bytes(48)

# A factory of stores over one database: each call is a new "instance" with its own engine.
StoreFactory = Callable[[], Awaitable[SqlRevocationStore]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
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
        schema = f"sec_rev_{secrets.token_hex(6)}"
        admin = create_async_engine(url)
        engines.append(admin)
        async with admin.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    async def make() -> SqlRevocationStore:
        # SQLite serialises writers; let racing instances queue generously on a busy machine.
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


async def test_contract_matches_the_memory_store(stores: StoreFactory) -> None:
    store = await stores()
    now = time.time()
    check = store.is_revoked
    assert not await check(jti="a", family="f", subject="u", issued_at=now)
    await store.revoke_token("a", now + 60)
    assert await check(jti="a", family=None, subject="u", issued_at=now)
    assert not await check(jti="b", family=None, subject="u", issued_at=now)
    await store.revoke_token("dead", now - 1)  # already expired: never counts
    assert not await check(jti="dead", family=None, subject="u", issued_at=now)
    await store.revoke_family("f", now + 60)
    assert await check(jti="b", family="f", subject="u", issued_at=now)
    await store.set_not_before("u", now, ttl=60)
    assert await check(jti=None, family=None, subject="u", issued_at=now - 5)
    assert await check(jti=None, family=None, subject="u", issued_at=None)  # no iat: epoch
    assert not await check(jti=None, family=None, subject="u", issued_at=now + 1)
    await store.set_not_before("u", now - 100, ttl=60)  # not-before never moves backwards
    assert await check(jti=None, family=None, subject="u", issued_at=now - 5)
    # Raw values that would be awkward as keys or NOTIFY payloads are digested.
    odd = "x\x00 y" * 500
    await store.revoke_token(odd, now + 60)
    assert await check(jti=odd, family=None, subject=odd, issued_at=now)
    assert await store.mark_used("r1", now + 60)
    assert not await store.mark_used("r1", now + 60)
    assert await store.mark_used("r2", now + 60)


async def test_mark_used_race_between_two_instances_has_exactly_one_winner(
    stores: StoreFactory,
) -> None:
    a, b = await stores(), await stores()
    expires = time.time() + 60
    jtis = [secrets.token_hex(8) for _ in range(25)]
    results = await asyncio.gather(
        *(store.mark_used(jti, expires) for jti in jtis for store in (a, b))
    )
    wins = [results[2 * i] + results[2 * i + 1] for i in range(len(jtis))]
    assert wins == [1] * len(jtis)


async def test_revocations_survive_a_restart(stores: StoreFactory) -> None:
    first = await stores()
    now = time.time()
    await first.revoke_token("t", now + 60)
    await first.revoke_family("f", now + 60)
    await first.set_not_before("u", now, ttl=60)
    assert await first.mark_used("r", now + 60)
    await first.aclose()
    second = await stores()  # a new process would build exactly this
    cached = await _listening_soon(second)  # PostgreSQL: answers come from the reload
    assert await second.is_revoked(jti="t", family=None, subject="v", issued_at=now)
    assert await second.is_revoked(jti=None, family="f", subject="v", issued_at=now)
    assert await second.is_revoked(jti=None, family=None, subject="u", issued_at=now - 1)
    assert not await second.mark_used("r", now + 60)
    assert (second.cache_checks == 3) is cached


async def _listening_soon(store: SqlRevocationStore) -> bool:
    try:
        async with asyncio.timeout(30):
            return await store.wait_until_listening()
    except TimeoutError:
        return False


async def test_purge_deletes_expired_rows_amortised(stores: StoreFactory) -> None:
    store = await stores()
    store.purge_every = 8
    now = time.time()
    for i in range(7):
        await store.revoke_token(f"old{i}", now - 1)
    await store.revoke_token("live", now + 60)  # the 8th write purges
    async with store._engine.connect() as conn:
        keys = (await conn.execute(store.tokens.select())).all()
    assert len(keys) == 1
    assert await store.is_revoked(jti="live", family=None, subject="u", issued_at=now)


async def test_reuse_and_logout_across_two_issuers(stores: StoreFactory) -> None:
    def issuer(store: SqlRevocationStore) -> TokenIssuer:
        return TokenIssuer(
            algorithm="HS256", signing_key=SECRET, issuer="i", audience="a", revocation=store
        )

    a, b = await stores(), await stores()
    issuer_a, issuer_b = issuer(a), issuer(b)
    pair = await issuer_a.issue("user-1")
    rotated = await issuer_a.refresh(pair.refresh_token)
    with pytest.raises(TokenReuseError):  # the old refresh token presented at another instance
        await issuer_b.refresh(pair.refresh_token)
    # The whole family died with it, here once B's NOTIFY arrives (milliseconds; the
    # reuse itself was caught exactly, by the atomic insert).
    await _eventually_refused(lambda: issuer_a.refresh(rotated.refresh_token))

    pair = await issuer_a.issue("user-2")
    await issuer_b.verifier.verify(pair.access_token)
    await issuer_a.logout(pair.access_token, pair.refresh_token)
    await _eventually_refused(lambda: issuer_b.verifier.verify(pair.access_token))

    pair = await issuer_b.issue("user-3")
    await issuer_a.logout_everywhere("user-3")
    await _eventually_refused(lambda: issuer_b.verifier.verify(pair.access_token))


async def _eventually_refused(attempt: Callable[[], Awaitable[object]]) -> None:
    # Generous bound: the other instance may be answering from its NOTIFY-fed cache.
    deadline = time.monotonic() + 30
    while True:
        try:
            await attempt()
        except TokenRevokedError:
            return
        assert time.monotonic() < deadline, "the revocation never reached the other instance"
        await asyncio.sleep(0.01)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed when the block ends: nothing listens


async def test_unreachable_database_fails_closed() -> None:
    pytest.importorskip("asyncpg")
    engine = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{_dead_port()}/x")
    store = SqlRevocationStore(engine)
    await store.start()  # the listener keeps retrying in the background; checks never wait
    try:
        assert not store.listening
        with pytest.raises(SecurityUnavailableError) as caught:
            await store.is_revoked(jti="a", family=None, subject="u", issued_at=None)
        assert caught.value.status_code == 503
        assert "127.0.0.1" not in caught.value.message  # no connection details
        with pytest.raises(SecurityUnavailableError):
            await store.revoke_token("a", time.time() + 60)
        with pytest.raises(SecurityUnavailableError):
            await store.mark_used("a", time.time() + 60)
        issuer = TokenIssuer(
            algorithm="HS256", signing_key=SECRET, issuer="i", audience="a", revocation=store
        )
        pair = await issuer.issue("u")
        with pytest.raises(SecurityUnavailableError):
            await issuer.verifier.verify(pair.access_token)
    finally:
        await store.aclose()
        await engine.dispose()
