"""The verified-token cache: digest-keyed, bounded, never outliving the token, never
caching a token accepted only thanks to leeway, never skipping revocation."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import jwt
import pytest

from saasfw.security import (
    InvalidTokenError,
    JwtVerifier,
    MemoryRevocationStore,
    StaticKeySet,
    TokenRevokedError,
)

SECRET = secrets.token_bytes(32)


def _verifier(**kwargs: Any) -> JwtVerifier:
    return JwtVerifier(
        StaticKeySet(algorithms=["HS256"], hmac_secrets={None: SECRET}),
        algorithms=["HS256"],
        issuer="i",
        audiences=["a"],
        **kwargs,
    )


def _token(**claims: Any) -> str:
    now = time.time()
    payload: dict[str, Any] = {"iss": "i", "aud": "a", "sub": "u", "exp": int(now) + 60}
    payload["jti"] = secrets.token_hex(8)
    payload.update(claims)
    return jwt.encode(payload, SECRET, algorithm="HS256", headers={"typ": "at+jwt"})


async def test_hits_skip_verification_and_keys_are_digests() -> None:
    verifier = _verifier()
    token = _token()
    for _ in range(5):
        await verifier.verify(token)
    assert (verifier.cache_misses, verifier.cache_hits) == (1, 4)
    [key] = verifier._cache
    assert len(key) == 32
    assert token.encode() not in key


async def test_the_cache_is_bounded() -> None:
    verifier = _verifier(cache_size=3)
    tokens = [_token() for _ in range(10)]
    for token in tokens:
        await verifier.verify(token)
    assert len(verifier._cache) == 3
    await verifier.verify(tokens[-1])
    assert verifier.cache_hits == 1  # the newest survived eviction
    disabled = _verifier(cache_size=0)
    await disabled.verify(tokens[0])
    await disabled.verify(tokens[0])
    assert disabled.cache_hits == 0


async def test_an_entry_never_outlives_its_token() -> None:
    verifier = _verifier(leeway=0)
    exp = int(time.time()) + 2
    token = _token(exp=exp)
    await verifier.verify(token)
    await verifier.verify(token)
    assert verifier.cache_hits == 1
    await asyncio.sleep(exp - time.time() + 0.05)
    with pytest.raises(InvalidTokenError) as info:
        await verifier.verify(token)
    assert info.value.code == "token.expired"


async def test_tokens_valid_only_within_leeway_are_not_cached() -> None:
    verifier = _verifier(leeway=30)
    token = _token(nbf=int(time.time()) + 10)  # accepted thanks to leeway only
    for _ in range(3):
        await verifier.verify(token)
    assert verifier.cache_hits == 0
    assert verifier.cache_misses == 3


async def test_revocation_is_checked_on_every_hit() -> None:
    store = MemoryRevocationStore()
    verifier = _verifier(revocation=store)
    token = _token(jti="j-7", iat=time.time() - 5)
    await verifier.verify(token)
    await store.revoke_token("j-7", time.time() + 60)
    with pytest.raises(TokenRevokedError):
        await verifier.verify(token)
    other = _token(iat=time.time() - 5)
    await verifier.verify(other)
    await store.set_not_before("u", time.time(), ttl=60)  # log out everywhere
    with pytest.raises(TokenRevokedError):
        await verifier.verify(other)


async def test_forget_drops_every_entry() -> None:
    verifier = _verifier()
    await verifier.verify(_token())
    verifier.forget()
    assert verifier._cache == {}
