"""Drive an ASGI app in process, without a server: lifespan, requests, answers.

The request path is kept small and identical for every app, so what the instruction
counter sees on top of the app's own work is the same few thousand instructions per
request for all of them (the ``null`` subject measures exactly that).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
Headers = list[tuple[bytes, bytes]]

_BASE_HEADERS: Headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")]
_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}
# What the app's lifespan left in its state; every request gets a shallow copy, as servers do.
_LIFESPAN_STATE: dict[str, Any] = {}


def scope(path: str, headers: Headers) -> dict[str, Any]:
    raw_path, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [*_BASE_HEADERS, *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": dict(_LIFESPAN_STATE),
    }


def bearer(token: str | None) -> Headers:
    return [(b"authorization", f"Bearer {token}".encode())] if token else []


async def _receive() -> Message:
    return _REQUEST


async def request(app: Any, path: str, headers: Headers) -> tuple[int, dict[str, str], bytes]:
    """One request; (status, lower-cased response headers, body)."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope(path, headers), _receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    found = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), found, body


async def status_only(app: Any, path: str, headers: Headers) -> int:
    """One request, keeping nothing but the status (the measured loop's request)."""
    status = 0

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope(path, headers), _receive, send)
    return status


async def get_json(app: Any, path: str, headers: Headers | None = None) -> Any:
    status, _, body = await request(app, path, headers or [])
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}: {body[:300]!r}")
    return json.loads(body)


async def null_app(scope: Any, receive: Any, send: Any) -> None:
    """The smallest ASGI answer: what the driver itself costs per request."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def started(app: Any) -> Callable[[], Awaitable[None]]:
    """Run the app's lifespan start-up; return the shutdown callable."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    _LIFESPAN_STATE.clear()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app(
            {"type": "lifespan", "asgi": {"version": "3.0"}, "state": _LIFESPAN_STATE},
            inbox.get,
            outbox.put,
        )
    )
    first = await outbox.get()
    if first["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"lifespan start-up failed: {first}")

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return stop
