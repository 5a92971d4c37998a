"""Acceptance 6: concurrent requests as different users never see each other's principal.

A real uvicorn process serves the app; hundreds of interleaved requests from many users
(over shared keep-alive connections) check the principal seen by the dependency, by
``get_current_principal()`` before and after an await, and inside a sync endpoint running
in the thread pool. Anonymous requests on the same connections must see no principal.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Annotated

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI

from saasfw.security import (
    Authenticator,
    JwtVerifier,
    Principal,
    StaticKeySet,
    get_current_principal,
    install_security,
    require,
)

SERVER = r"""
import asyncio, os, random
from typing import Annotated
from fastapi import Depends, FastAPI
import uvicorn
from saasfw.security import (
    Authenticator, JwtVerifier, Principal, StaticKeySet, get_current_principal,
    install_security, public, require,
)

secret = os.environ["JWT_SECRET"].encode()  # the hex text itself is the HMAC key
verifier = JwtVerifier(
    StaticKeySet(algorithms=["HS256"], hmac_secrets={None: secret}),
    algorithms=["HS256"], issuer="https://auth.test", audiences=["api"],
)
app = FastAPI()
install_security(app, Authenticator(jwt=verifier))

def _id() -> str | None:
    p = get_current_principal()
    return None if p is None else p.id

@app.get("/async")
async def async_route(p: Annotated[Principal, Depends(require("orders:read"))]) -> dict:
    before = _id()
    await asyncio.sleep(random.random() / 200)
    return {"dep": p.id, "before": before, "after": _id()}

@app.get("/sync")
def sync_route(p: Annotated[Principal, Depends(require("orders:read"))]) -> dict:
    return {"dep": p.id, "before": _id(), "after": _id()}

@app.get("/anonymous", dependencies=[Depends(public)])
async def anonymous() -> dict:
    await asyncio.sleep(random.random() / 200)
    return {"current": _id()}

uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, bytes]]:
    secret = secrets.token_bytes(32)
    port = _free_port()
    env = {**os.environ, "JWT_SECRET": secret.hex(), "PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/anonymous", timeout=1.0)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("uvicorn did not start") from None
                time.sleep(0.1)
        yield url, secret.hex().encode()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _token(secret: bytes, sub: str) -> str:
    now = int(time.time())
    claims = {
        "iss": "https://auth.test",
        "aud": "api",
        "sub": sub,
        "iat": now,
        "exp": now + 300,
        "scope": "orders:read",
    }
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "at+jwt"})


async def test_hundreds_of_interleaved_requests_never_see_another_principal(
    server: tuple[str, bytes],
) -> None:
    url, secret = server
    users = [f"user-{i}" for i in range(40)]
    tokens = {u: _token(secret, u) for u in users}
    plan: list[tuple[str, str | None]] = []
    for _ in range(300):
        kind = random.choice(["/async", "/async", "/sync", "/anonymous"])
        plan.append((kind, None if kind == "/anonymous" else random.choice(users)))

    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def call(path: str, user: str | None) -> tuple[str, str | None, dict[str, object]]:
            headers = {} if user is None else {"Authorization": f"Bearer {tokens[user]}"}
            response = await client.get(path, headers=headers)
            assert response.status_code == 200, response.text
            return path, user, response.json()

        results = await asyncio.gather(*(call(p, u) for p, u in plan))

    seen_users = set()
    for path, user, body in results:
        if user is None:
            assert body == {"current": None}
        else:
            assert body == {"dep": user, "before": user, "after": user}, (path, user, body)
            seen_users.add(user)
    assert len(seen_users) > 30
    assert sum(1 for _, u, _ in results if u is None) > 30


async def test_the_principal_never_outlives_its_request_in_the_same_task() -> None:
    # httpx's ASGITransport runs the app in the caller's task: the strictest case for a leak.
    secret = secrets.token_bytes(32)
    verifier = JwtVerifier(
        StaticKeySet(algorithms=["HS256"], hmac_secrets={None: secret}),
        algorithms=["HS256"],
        issuer="https://auth.test",
        audiences=["api"],
    )
    app = FastAPI()
    install_security(app, Authenticator(jwt=verifier))

    @app.get("/me")
    async def me(p: Annotated[Principal, Depends(require("orders:read"))]) -> dict[str, str]:
        current = get_current_principal()
        assert current is not None
        return {"id": current.id}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for user in ("ann", "ben"):
            headers = {"Authorization": f"Bearer {_token(secret, user)}"}
            assert (await client.get("/me", headers=headers)).json() == {"id": user}
            assert get_current_principal() is None
        assert (await client.get("/me")).status_code == 401
    assert get_current_principal() is None
