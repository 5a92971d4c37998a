"""Acceptance 3: refresh-token rotation with reuse detection, logout, logout everywhere.

Runs against the memory store and a real Redis (random key prefix per test).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fastapi import Depends, FastAPI, Header

from saasfw.security import (
    Authenticator,
    ConfigurationError,
    InvalidTokenError,
    MemoryRevocationStore,
    Principal,
    RedisRevocationStore,
    SecurityEvents,
    TokenIssuer,
    TokenReuseError,
    TokenRevokedError,
    install_security,
    public,
    require,
)
from saasfw.security.advanced import SecurityEvent
from saasfw.security.tokens import CachedRevocationStore, RevocationStore

SECRET = b"s" * 32 + secrets.token_bytes(16)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RevocationStore]:
    if request.param == "memory":
        yield MemoryRevocationStore()
        return
    pytest.importorskip("redis")
    url = request.getfixturevalue("redis_url")
    prefix = f"test:{secrets.token_hex(8)}:"
    redis_store = RedisRevocationStore.from_url(url, prefix=prefix)
    yield redis_store
    client = redis_store._redis
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await redis_store.aclose()


def _issuer(store: RevocationStore, events: SecurityEvents | None = None) -> TokenIssuer:
    return TokenIssuer(
        algorithm="HS256",
        signing_key=SECRET,
        issuer="https://auth.example",
        audience="orders-api",
        revocation=store,
        events=events,
        key_id="2026-11",
    )


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(store: RevocationStore) -> None:
    events: list[SecurityEvent] = []
    bus = SecurityEvents()
    bus.subscribe(events.append)
    issuer = _issuer(store, bus)
    first = await issuer.issue("alice", tenant="acme", roles=["editor"])
    second = await issuer.refresh(first.refresh_token)
    assert second.family == first.family
    assert second.refresh_token != first.refresh_token
    third = await issuer.refresh(second.refresh_token)
    principal = (await issuer.verifier.verify(third.access_token)).principal
    assert principal.tenant == "acme"
    assert principal.roles == frozenset({"editor"})

    # An attacker replays the stolen second refresh token: reuse detected.
    with pytest.raises(TokenReuseError):
        await issuer.refresh(second.refresh_token)
    assert [e.type for e in events] == ["auth.token.reuse_detected"]
    assert events[0].principal_id == "alice"
    assert second.refresh_token not in repr(events[0])

    # The whole family is gone: the legitimate latest tokens and their access tokens too.
    with pytest.raises(TokenRevokedError):
        await issuer.refresh(third.refresh_token)
    with pytest.raises(TokenRevokedError):
        await issuer.verifier.verify(third.access_token)
    with pytest.raises(TokenRevokedError):
        await issuer.verifier.verify(first.access_token)
    # Another login (another family) is unaffected.
    other = await issuer.issue("alice")
    await issuer.verifier.verify(other.access_token)
    await issuer.refresh(other.refresh_token)


async def test_logout_makes_the_access_token_unusable_at_once_even_when_cached(
    store: RevocationStore,
) -> None:
    issuer = _issuer(store)
    pair = await issuer.issue("bob")
    verifier = issuer.verifier
    await verifier.verify(pair.access_token)
    await verifier.verify(pair.access_token)
    assert verifier.cache_hits >= 1  # the token is in the verified-token cache
    await issuer.logout(pair.access_token, pair.refresh_token)
    with pytest.raises(TokenRevokedError):
        await verifier.verify(pair.access_token)
    with pytest.raises(TokenRevokedError):
        await issuer.refresh(pair.refresh_token)


async def test_logout_everywhere_refuses_older_tokens_but_not_newer(
    store: RevocationStore,
) -> None:
    issuer = _issuer(store)
    old_a = await issuer.issue("carol")
    old_b = await issuer.issue("carol")
    bystander = await issuer.issue("dave")
    await issuer.verifier.verify(old_a.access_token)
    await issuer.logout_everywhere("carol")
    for token in (old_a.access_token, old_b.access_token):
        with pytest.raises(TokenRevokedError):
            await issuer.verifier.verify(token)
    with pytest.raises(TokenRevokedError):
        await issuer.refresh(old_b.refresh_token)
    fresh = await issuer.issue("carol")
    assert (await issuer.verifier.verify(fresh.access_token)).principal.id == "carol"
    await issuer.verifier.verify(bystander.access_token)


async def test_refresh_and_access_tokens_are_not_interchangeable() -> None:
    issuer = _issuer(MemoryRevocationStore())
    pair = await issuer.issue("erin")
    with pytest.raises(InvalidTokenError):
        await issuer.verifier.verify(pair.refresh_token)
    with pytest.raises(InvalidTokenError):
        await issuer.refresh(pair.access_token)


@pytest.mark.parametrize(
    ("algorithm", "key"),
    [
        ("HS256", SECRET),
        ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("ES256", ec.generate_private_key(ec.SECP256R1())),
        ("EdDSA", ed25519.Ed25519PrivateKey.generate()),
    ],
)
async def test_every_issuable_algorithm_round_trips(algorithm: str, key: Any) -> None:
    issuer = TokenIssuer(
        algorithm=algorithm, signing_key=key, issuer="https://auth.example", audience="api"
    )
    pair = await issuer.issue("frank", scopes=["orders:read"])
    verified = await issuer.verifier.verify(pair.access_token)
    assert verified.algorithm == algorithm
    assert verified.principal.permissions == frozenset({"orders:read"})
    assert pair.access_token not in repr(pair)
    assert pair.refresh_token not in repr(pair)


def test_issuer_configuration_fails_closed() -> None:
    with pytest.raises(ConfigurationError):
        TokenIssuer(algorithm="HS256", signing_key=b"short", issuer="i", audience="a")
    with pytest.raises(ConfigurationError):
        TokenIssuer(algorithm="none", signing_key=SECRET, issuer="i", audience="a")
    with pytest.raises(ConfigurationError):
        TokenIssuer(
            algorithm="HS256", signing_key=SECRET, issuer="i", audience="a", access_ttl=10**6
        )


async def test_logout_over_http_makes_the_token_unusable_on_the_next_request() -> None:
    issuer = _issuer(MemoryRevocationStore())
    app = FastAPI()
    install_security(app, Authenticator(jwt=issuer.verifier))

    @app.get("/me")
    async def me(principal: Annotated[Principal, Depends(require())]) -> dict[str, str]:
        return {"id": principal.id}

    @app.post("/logout", dependencies=[Depends(public)])
    async def logout(authorization: Annotated[str, Header()]) -> dict[str, bool]:
        await issuer.logout(authorization.removeprefix("Bearer "))
        return {"ok": True}

    pair = await issuer.issue("gina")
    headers = {"Authorization": f"Bearer {pair.access_token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/me", headers=headers)).status_code == 200
        assert (await client.get("/me", headers=headers)).status_code == 200
        assert (await client.post("/logout", headers=headers)).status_code == 200
        response = await client.get("/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "token.revoked"


async def test_rotation_never_extends_a_login_beyond_its_absolute_lifetime() -> None:
    issuer = TokenIssuer(
        algorithm="HS256",
        signing_key=SECRET,
        issuer="https://auth.example",
        audience="orders-api",
        access_ttl=1,
        refresh_ttl=2,
        session_ttl=2,
    )
    first = await issuer.issue("hank")
    second = await issuer.refresh(first.refresh_token)
    assert second.refresh_expires_at <= first.refresh_expires_at  # capped, not slid
    auth_time = (await issuer.verifier.verify(second.access_token)).claims["auth_time"]
    await asyncio.sleep(auth_time + 2 - time.time() + 0.1)
    # The refresh token is still inside the verifier's leeway, but the login is over.
    with pytest.raises(InvalidTokenError, match="absolute lifetime"):
        await issuer.refresh(second.refresh_token)


async def test_logout_with_an_expired_access_token_still_ends_the_family() -> None:
    issuer = _issuer(MemoryRevocationStore())
    pair = await issuer.issue("ivy")
    with pytest.raises(InvalidTokenError):
        await issuer.logout("not-a-token")
    await issuer.logout("not-a-token", pair.refresh_token)
    with pytest.raises(TokenRevokedError):
        await issuer.refresh(pair.refresh_token)
    with pytest.raises(TokenRevokedError):
        await issuer.verifier.verify(pair.access_token)  # same family


@pytest.mark.redis
async def test_cached_revocation_store_bounds_staleness_across_workers(redis_url: str) -> None:
    pytest.importorskip("redis")
    prefix = f"test:{secrets.token_hex(8)}:"
    shared_a = RedisRevocationStore.from_url(redis_url, prefix=prefix)
    shared_b = RedisRevocationStore.from_url(redis_url, prefix=prefix)
    worker_a = _issuer(CachedRevocationStore(shared_a, ttl=0.3))
    worker_b = _issuer(CachedRevocationStore(shared_b, ttl=0.3))
    try:
        pair = await worker_a.issue("jay")
        await worker_a.verifier.verify(pair.access_token)
        await worker_b.verifier.verify(pair.access_token)
        await worker_a.logout(pair.access_token)
        with pytest.raises(TokenRevokedError):  # the worker that logged out: at once
            await worker_a.verifier.verify(pair.access_token)
        await worker_b.verifier.verify(pair.access_token)  # the other: still within ttl
        await asyncio.sleep(0.35)
        with pytest.raises(TokenRevokedError):  # ... and refused once ttl has passed
            await worker_b.verifier.verify(pair.access_token)
    finally:
        client = shared_a._redis
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await shared_a.aclose()
        await shared_b.aclose()
