"""Security stores that are unreachable refuse requests with 503, never 500, never open."""

from __future__ import annotations

import secrets
import socket
import time
from typing import Annotated

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from saasfw.security import (
    ApiKeyService,
    Authenticator,
    JwtVerifier,
    Principal,
    RedisRevocationStore,
    SecurityUnavailableError,
    SqlApiKeyStore,
    StaticKeySet,
    install_security,
    require,
)

SECRET = secrets.token_bytes(32)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed when the block ends: nothing listens


def _token() -> str:
    now = int(time.time())
    claims = {"iss": "i", "aud": "a", "sub": "u", "exp": now + 60, "jti": secrets.token_hex(8)}
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"typ": "at+jwt"})


async def test_revocation_store_down_fails_closed_with_503() -> None:
    pytest.importorskip("redis")
    store = RedisRevocationStore.from_url(f"redis://127.0.0.1:{_dead_port()}/0")
    verifier = JwtVerifier(
        StaticKeySet(algorithms=["HS256"], hmac_secrets={None: SECRET}),
        algorithms=["HS256"],
        issuer="i",
        audiences=["a"],
        revocation=store,
    )
    token = _token()
    with pytest.raises(SecurityUnavailableError):
        await verifier.verify(token)
    with pytest.raises(SecurityUnavailableError):  # and again: a failed check is never cached
        await verifier.verify(token)

    calls: list[str] = []
    app = FastAPI()
    install_security(app, Authenticator(jwt=verifier))

    @app.get("/x")
    async def x(p: Annotated[Principal, Depends(require())]) -> dict[str, str]:
        calls.append(p.id)
        return {}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/x", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "security.unavailable"
    assert calls == []
    await store.aclose()


async def test_api_key_database_down_fails_closed_with_503() -> None:
    pytest.importorskip("asyncpg")
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(
        f"postgresql+asyncpg://postgres@127.0.0.1:{_dead_port()}/test",
        connect_args={"timeout": 2},
    )
    service = ApiKeyService(
        SqlApiKeyStore(engine), peppers={"p": SecretStr("z" * 40)}, current_pepper="p"
    )
    from saasfw.security import MemoryApiKeyStore

    # A well-formed key (made by a working service with the same prefix) reaches the store.
    key = (
        await ApiKeyService(
            MemoryApiKeyStore(), peppers={"p": SecretStr("z" * 40)}, current_pepper="p"
        ).create("k", principal_id="svc")
    ).key
    app = FastAPI()
    install_security(app, Authenticator(api_keys=service))

    @app.get("/x")
    async def x(p: Annotated[Principal, Depends(require())]) -> dict[str, str]:
        return {}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/x", headers={"X-API-Key": key})
    assert response.status_code == 503
    assert key not in response.text
    await engine.dispose()
