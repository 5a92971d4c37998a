"""Messaging through create_app: publish in the unit of work, the relay delivers, handlers run.

The in-process transport (``messaging.kind: memory``) carries the events, so this runs on
a machine with only Python; the broker transports are exercised by saasfw-messaging's own
suite and the integration tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, Depends
from pydantic import BaseModel, SecretStr
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from saasfw.app import (
    ComponentSwitches,
    DbSession,
    EventHandlers,
    EventPublisher,
    Job,
    JobContext,
    ServiceSettings,
    create_app,
    load_settings,
    production_rules,
)
from saasfw.config import UnsafeSettingsError, enforce_production_rules
from saasfw.messaging import CloudEvent, MessagingSettings, Received
from saasfw.security import public

metadata = MetaData()
items = Table("items", metadata, Column("name", String(50), primary_key=True))
projection = Table(
    "item_projection",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50), nullable=False),
)


class ItemCreated(BaseModel):
    name: str


def _app(
    tmp_path: Path, bus: str, *, jobs: Sequence[Job] = (), cleanup: float = 3600.0
) -> tuple[object, EventHandlers]:
    settings = ServiceSettings(
        service="catalog",
        env="test",
        data_dir=tmp_path,
        components=ComponentSwitches(observability=False, audit=False, messaging=True),
        messaging=MessagingSettings(
            kind="memory",
            broker_url=SecretStr("memory://local"),
            destination=bus,
            cleanup_interval=cleanup,
        ),
    )
    router = APIRouter(dependencies=[Depends(public)])

    @router.post("/items/{name}", status_code=201)
    async def create(name: str, session: DbSession, events: EventPublisher) -> dict[str, str]:
        await session.execute(insert(items).values(name=name))
        await events.publish(
            session, CloudEvent.create("catalog.item.created.v1", ItemCreated(name=name)), key=name
        )
        return {"name": name}

    handlers = EventHandlers("catalog-projection")

    @handlers.handler("catalog.item.created.v1", ItemCreated)
    async def project(received: Received[ItemCreated], session: AsyncSession) -> None:
        await session.execute(insert(projection).values(name=received.data.name))

    app = create_app(settings, routers=[router], events=[handlers], jobs=jobs)
    return app, handlers


@pytest.mark.asyncio
async def test_a_published_event_is_projected_once(tmp_path: Path) -> None:
    app, _ = _app(tmp_path, f"bus-{uuid.uuid4().hex[:8]}")
    # The service's own tables, as its migrations would make them before it starts.
    (tmp_path / "catalog").mkdir(exist_ok=True)
    sync_engine = create_engine(f"sqlite:///{tmp_path / 'catalog' / 'catalog.db'}")
    metadata.create_all(sync_engine)
    sync_engine.dispose()
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        from saasfw.app import database, singletons_of

        db = singletons_of(app).get(database)
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for n in range(10):
                assert (await client.post(f"/items/i{n}")).status_code == 201
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                async with db.engine.connect() as conn:
                    names = [r[0] for r in await conn.execute(select(projection.c.name))]
                if len(names) >= 10 or asyncio.get_running_loop().time() > deadline:
                    break
                await asyncio.sleep(0.05)
            ready = await client.get("/health/ready")
            asyncapi = await client.get("/asyncapi.json")
    assert sorted(names) == sorted(f"i{n}" for n in range(10))  # once each
    body = ready.json()
    assert ready.status_code == 200
    assert {"broker", "outbox_relay"} <= set(body["checks"])
    assert asyncapi.status_code == 200
    document = asyncapi.json()
    assert document["asyncapi"].startswith("3.")
    assert "catalog.item.created.v1" in asyncapi.text  # the consumed event's channel


async def test_the_cleanups_run_beside_the_services_own_jobs(tmp_path: Path) -> None:
    ran: list[int] = []

    async def report(context: JobContext) -> None:
        ran.append(context.period)

    app, _ = _app(
        tmp_path, f"bus-{uuid.uuid4().hex[:8]}", jobs=[Job("report", 0.2, report)], cleanup=0.2
    )
    (tmp_path / "catalog").mkdir(exist_ok=True)
    sync_engine = create_engine(f"sqlite:///{tmp_path / 'catalog' / 'catalog.db'}")
    metadata.create_all(sync_engine)
    sync_engine.dispose()
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        from saasfw.app import database, singletons_of

        db = singletons_of(app).get(database)
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            async with db.engine.connect() as conn:
                rows = (await conn.execute(text("SELECT job FROM saasfw_job_runs"))).all()
            names = {row.job.split(":")[0] for row in rows}
            if {"report", "outbox-cleanup", "inbox-cleanup"} <= names:
                break
            assert asyncio.get_running_loop().time() < deadline, names
            await asyncio.sleep(0.05)
    assert ran


def test_production_refuses_the_in_process_transport(tmp_path: Path) -> None:
    loaded = load_settings(
        ServiceSettings,
        service="catalog",
        env="production",
        config_dir=None,
        environ={
            "SAASFW_COMPONENTS__MESSAGING": "true",
            "SAASFW_MESSAGING__KIND": "memory",
            "SAASFW_MESSAGING__BROKER_URL": "memory://local",
            "SAASFW_DATA_DIR": str(tmp_path),
        },
    )
    with pytest.raises(UnsafeSettingsError) as refused:
        enforce_production_rules(loaded, production_rules())
    report = refused.value.report()
    assert "messaging (rule messaging" in report
    assert "development only" in report
