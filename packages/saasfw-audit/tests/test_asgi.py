"""Acceptance 6 and the security-events listener, through a real FastAPI app."""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException

from saasfw.audit import Actor, AuditLogger, AuditMiddleware, FileSink, security_events_listener

# The test's stand-in for the security package: a real dependency that verifies a bearer
# token and sets the principal contextvar the actor port reads.
_principal: ContextVar[Actor | None] = ContextVar("principal", default=None)
_TOKENS = {"token-alice": Actor("alice", kind="user", tenant="acme")}


async def authenticated(authorization: Annotated[str | None, Header()] = None) -> Actor:
    actor = _TOKENS.get((authorization or "").removeprefix("Bearer "))
    if actor is None:
        raise HTTPException(401, "not authenticated")
    _principal.set(actor)
    return actor


def _app(logger: AuditLogger) -> FastAPI:
    app = FastAPI()

    @app.post("/orders/{order_id}")
    async def update(
        order_id: str, who: Annotated[Actor, Depends(authenticated)]
    ) -> dict[str, str]:
        return {"order": order_id, "by": who.id}

    @app.get("/orders/{order_id}")
    async def read(order_id: str) -> dict[str, str]:
        return {"order": order_id}

    app.add_middleware(AuditMiddleware, logger=logger)
    return app


def _task_per_request(app: FastAPI) -> Any:
    """Run each request in its own task and context, as an ASGI server does (httpx's
    in-process transport would otherwise share one context across requests)."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.create_task(app(scope, receive, send), context=contextvars.Context())

    return asgi


@pytest.fixture
async def logger(tmp_path: Path) -> AsyncIterator[AuditLogger]:
    lg = AuditLogger(
        [FileSink(tmp_path / "audit.jsonl")],
        producer_id="web",
        actor_provider=_principal.get,
        correlation_id_provider=lambda: "corr-42",
        batch_interval=0.005,
    )
    async with lg:
        yield lg


def _records(logger: AuditLogger, tmp_path: Path) -> list[dict[str, Any]]:
    assert logger.flush()
    return [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]


async def test_actor_is_the_authenticated_principal_not_the_claimed_header(
    logger: AuditLogger, tmp_path: Path
) -> None:
    transport = httpx.ASGITransport(app=_task_per_request(_app(logger)))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        forged = {"X-User-Id": "root", "X-Tenant-Id": "evil", "X-Forwarded-User": "admin"}
        ok = await client.post(
            "/orders/7", headers={**forged, "Authorization": "Bearer token-alice"}
        )
        denied = await client.post("/orders/8", headers=forged)
        read = await client.get("/orders/7", headers=forged)
    assert ok.status_code == 200
    assert denied.status_code == 401
    assert read.status_code == 200
    records = _records(logger, tmp_path)
    assert len(records) == 2  # the GET is not state-changing
    first, second = records
    assert first["actor"] == {"id": "alice", "kind": "user", "tenant": "acme", "address": None}
    assert first["outcome"] == "success"
    assert first["details"]["route"] == "/orders/{order_id}"  # template, not the raw path
    assert first["details"]["status"] == 200
    assert first["correlation_id"] == "corr-42"
    assert second["actor"]["id"] == "anonymous"
    assert second["outcome"] == "denied"
    assert "root" not in json.dumps(records)
    assert "evil" not in json.dumps(records)


@dataclass(frozen=True)
class _SecurityEvent:
    type: str
    outcome: str
    principal_id: str | None
    tenant: str | None
    address: str | None
    details: dict[str, Any] = field(default_factory=dict)


async def test_security_events_are_recorded_with_secrets_redacted(
    logger: AuditLogger, tmp_path: Path
) -> None:
    listener = security_events_listener(logger)
    listener(
        _SecurityEvent(
            "auth.login.failed",
            "failure",
            None,
            "acme",
            "10.0.0.9",
            {"username": "bob", "password": "hunter2", "reason": "bad password"},
        )
    )
    [rec] = _records(logger, tmp_path)
    assert rec["type"] == "auth.login.failed"
    assert rec["outcome"] == "failure"
    assert rec["actor"] == {
        "id": "anonymous",
        "kind": "anonymous",
        "tenant": "acme",
        "address": "10.0.0.9",
    }
    assert rec["details"]["password"] == "[redacted]"
    assert "hunter2" not in json.dumps(rec)


async def test_a_crashing_endpoint_is_recorded_as_a_failure(
    logger: AuditLogger, tmp_path: Path
) -> None:
    app = FastAPI()

    @app.delete("/items/{item_id}")
    async def boom(item_id: str) -> None:
        raise RuntimeError("database exploded")

    app.add_middleware(AuditMiddleware, logger=logger)
    transport = httpx.ASGITransport(app=_task_per_request(app), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.delete("/items/3")
    assert response.status_code == 500
    [rec] = _records(logger, tmp_path)
    assert rec["outcome"] == "failure"
    assert rec["details"]["status"] == 500
    assert rec["details"]["route"] == "/items/{item_id}"
    assert "exploded" not in json.dumps(rec)


async def test_a_closed_logger_never_breaks_the_response(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lg = AuditLogger([FileSink(tmp_path / "audit.jsonl")], producer_id="closed")
    app = FastAPI()

    @app.post("/x")
    async def x() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(AuditMiddleware, logger=lg)
    transport = httpx.ASGITransport(app=_task_per_request(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/x")  # the logger was never started
    assert response.status_code == 200
    assert "audit event for POST /x (status 200) not recorded" in caplog.text
