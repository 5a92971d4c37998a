"""run_audit_outbox: a mutation stages its event in its transaction; a full outbox is a 503."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, FastAPI

from saasfw.app import (
    ComponentSwitches,
    ServiceSettings,
    audit_outbox,
    create_app,
    database,
    run_audit_outbox,
    singletons_of,
)
from saasfw.audit import AuditOutbox, Resource
from saasfw.db import Database
from saasfw.security import public


def _app(tmp_path: Path) -> FastAPI:
    settings = ServiceSettings(
        service="outbox-demo",
        env="test",
        data_dir=tmp_path,
        components=ComponentSwitches(observability=False),
    )
    router = APIRouter(dependencies=[Depends(public)])

    @router.post("/things/{name}")
    async def create(
        name: str,
        db: Annotated[Database, Depends(database)],
        outbox: Annotated[AuditOutbox, Depends(audit_outbox)],
    ) -> dict[str, str]:
        async with db.engine.begin() as conn:
            eid = await outbox.stage(conn, "things.thing.created", resource=Resource("thing", name))
        return {"event": eid}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # No wake() after commits and an hour's poll: events wait until the test wakes it.
        async with run_audit_outbox(app, max_depth=2, poll_interval=3600) as outbox:
            async with singletons_of(app).get(database).engine.begin() as conn:
                await conn.run_sync(outbox.tables.messages.metadata.create_all)
            outbox._stats_interval = 0.0
            yield

    return create_app(settings, routers=[router], lifespan=lifespan)


async def test_a_full_outbox_answers_503_with_retry_after_then_recovers(tmp_path: Path) -> None:
    app = _app(tmp_path)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        assert (await client.post("/things/a")).status_code == 200
        assert (await client.post("/things/b")).status_code == 200
        refused = await client.post("/things/c")
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "audit.unavailable"
        singletons_of(app).get(audit_outbox).wake()
        deadline = time.monotonic() + 60
        while (await client.post("/things/d")).status_code != 200:
            assert time.monotonic() < deadline, "the relay never drained the outbox"
            singletons_of(app).get(audit_outbox).wake()
            await asyncio.sleep(0.1)
    log = tmp_path / "outbox_demo" / "audit" / "audit.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()]
    things = [r["resource"]["id"] for r in records if r["type"] == "things.thing.created"]
    assert things[:2] == ["a", "b"]
    assert "c" not in things  # refused: never staged, never committed


async def test_events_waiting_at_shutdown_are_delivered_before_the_logger_closes(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        assert (await client.post("/things/x")).status_code == 200
        assert (await client.post("/things/y")).status_code == 200
    log = tmp_path / "outbox_demo" / "audit" / "audit.jsonl"
    records = [json.loads(x) for x in log.read_text().splitlines()]
    things = [r["resource"]["id"] for r in records if r["type"] == "things.thing.created"]
    assert things == ["x", "y"]
