"""require(...) on WebSocket routes: the handshake is refused (close 1008) without valid
credentials; accepted connections see their own principal. Driven over raw ASGI."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import MutableMapping
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, WebSocket

from saasfw.security import (
    Authenticator,
    JwtVerifier,
    Principal,
    StaticKeySet,
    get_current_principal,
    install_security,
    require,
)

SECRET = secrets.token_bytes(32)


def _app() -> FastAPI:
    verifier = JwtVerifier(
        StaticKeySet(algorithms=["HS256"], hmac_secrets={None: SECRET}),
        algorithms=["HS256"],
        issuer="i",
        audiences=["a"],
    )
    app = FastAPI()
    install_security(app, Authenticator(jwt=verifier))

    @app.websocket("/ws")
    async def ws(
        websocket: WebSocket, p: Annotated[Principal, Depends(require("chat:read"))]
    ) -> None:
        await websocket.accept()
        current = get_current_principal()
        await websocket.send_text(f"{p.id}:{current.id if current else None}")
        await websocket.close()

    return app


def _token(scope: str) -> str:
    now = int(time.time())
    claims = {"iss": "i", "aud": "a", "sub": "wendy", "exp": now + 60, "scope": scope}
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"typ": "at+jwt"})


async def _handshake(app: FastAPI, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"t"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("t", 80),
        "subprotocols": [],
        "state": {},
    }
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))
        if message["type"] == "websocket.close":
            await inbox.put({"type": "websocket.disconnect", "code": message.get("code", 1000)})

    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


async def test_websocket_with_a_valid_token_sees_its_principal() -> None:
    sent = await _handshake(_app(), [(b"authorization", f"Bearer {_token('chat:read')}".encode())])
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    assert sent[1]["text"] == "wendy:wendy"
    assert get_current_principal() is None


async def test_websocket_without_credentials_or_permission_is_refused_at_handshake() -> None:
    app = _app()
    for headers in (
        [],
        [(b"authorization", b"Bearer not.a.token")],
        [(b"authorization", f"Bearer {_token('other:read')}".encode())],
    ):
        sent = await _handshake(app, headers)
        assert sent[0]["type"] == "websocket.close", sent
        assert sent[0]["code"] == 1008
        assert all(m["type"] != "websocket.accept" for m in sent)
