"""create_app composes the pieces; every piece answers through the one app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from saasfw.app import (
    ComponentSwitches,
    DbSession,
    Provided,
    ServiceSettings,
    create_app,
    current_settings,
)
from saasfw.app._observability import observability_settings
from saasfw.observability import setup_observability
from saasfw.security import public

clock: Provided[str] = Provided("clock")


class Item(BaseModel):
    name: str


def make_settings(tmp_path: Path, **components: bool) -> ServiceSettings:
    return ServiceSettings(
        service="demo-service",
        env="test",
        data_dir=tmp_path,
        components=ComponentSwitches(**components),
    )


def make_app(
    settings: ServiceSettings, router: APIRouter | None = None, **kwargs: object
) -> FastAPI:
    obs = setup_observability(
        observability_settings(settings), registry=CollectorRegistry(), logging=False
    )
    return create_app(
        settings,
        routers=[router] if router else [],
        observability=obs,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(public)])

    @router.post("/items")
    async def create(item: Item) -> Item:
        return item

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    @router.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "short and stout")

    @router.get("/settings")
    async def show(s: Annotated[ServiceSettings, Depends(current_settings)]) -> dict[str, str]:
        return {"service": s.service}

    @router.get("/db")
    async def db(session: DbSession) -> dict[str, int]:
        from sqlalchemy import text

        return {"one": (await session.execute(text("SELECT 1"))).scalar_one()}

    return router


async def client_for(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_errors_are_problem_json_without_internals(tmp_path: Path, router: APIRouter) -> None:
    app = make_app(make_settings(tmp_path), router)
    async with app.router.lifespan_context(app), await client_for(app) as client:
        invalid = await client.post("/items", json={"name": 3, "password": "hunter2"})
        assert invalid.status_code == 422
        assert invalid.headers["content-type"] == "application/problem+json"
        body = invalid.json()
        assert body["status"] == 422
        assert body["errors"][0]["loc"] == ["body", "name"]
        assert "hunter2" not in invalid.text
        assert "input" not in body["errors"][0]

        failing = await client.get("/boom")
        assert failing.status_code == 500
        assert "secret internals" not in failing.text
        assert failing.json()["correlation_id"] == failing.headers["x-request-id"]

        teapot = await client.get("/teapot")
        assert teapot.status_code == 418
        assert teapot.json()["detail"] == "short and stout"

        missing = await client.get("/nowhere")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"


async def test_health_and_settings_and_database(tmp_path: Path, router: APIRouter) -> None:
    app = make_app(make_settings(tmp_path), router)
    async with app.router.lifespan_context(app), await client_for(app) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert set(ready.json()["checks"]) == {"database", "audit"}
        assert (await client.get("/settings")).json() == {"service": "demo-service"}
        assert (await client.get("/db")).json() == {"one": 1}
        assert (await client.get("/metrics")).status_code == 200
    assert (tmp_path / "demo_service" / "demo_service.db").exists()


async def test_pieces_switch_off(tmp_path: Path, router: APIRouter) -> None:
    settings = make_settings(
        tmp_path, health=False, database=False, observability=False, audit=False
    )
    app = create_app(settings, routers=[router])
    async with app.router.lifespan_context(app), await client_for(app) as client:
        assert (await client.get("/health/ready")).status_code == 404
        assert (await client.get("/metrics")).status_code == 404
        assert "x-request-id" not in (await client.get("/settings")).headers
    assert not (tmp_path / "demo_service" / "demo_service.db").exists()


async def test_singletons_are_lifespan_scoped_and_overridable(tmp_path: Path) -> None:
    from contextlib import asynccontextmanager

    events: list[str] = []

    @asynccontextmanager
    async def make_clock(app: FastAPI):  # type: ignore[no-untyped-def]
        events.append("open")
        yield "real"
        events.append("close")

    router = APIRouter(dependencies=[Depends(public)])

    @router.get("/clock")
    async def read(value: Annotated[str, Depends(clock)]) -> dict[str, str]:
        return {"clock": value}

    settings = make_settings(tmp_path, database=False)
    app = make_app(settings, router, singletons=[(clock, make_clock)])
    async with app.router.lifespan_context(app), await client_for(app) as client:
        assert (await client.get("/clock")).json() == {"clock": "real"}
        app.dependency_overrides[clock] = lambda: "fake"
        assert (await client.get("/clock")).json() == {"clock": "fake"}
    assert events == ["open", "close"]


async def test_routes_without_declared_security_refuse_to_start(tmp_path: Path) -> None:
    router = APIRouter()

    @router.get("/open")
    async def open_route() -> None: ...

    app = make_app(make_settings(tmp_path, database=False, audit=False), router)
    with pytest.raises(Exception, match="GET /open"):
        async with app.router.lifespan_context(app):
            pass


async def test_switching_rate_limits_off_keeps_declared_limits_working(tmp_path: Path) -> None:
    from saasfw.security import RateLimit

    router = APIRouter(dependencies=[Depends(public)])

    @router.get("/limited", dependencies=[Depends(RateLimit("1/minute"))])
    async def limited() -> dict[str, bool]:
        return {"ok": True}

    on = make_app(make_settings(tmp_path / "on", database=False, audit=False), router)
    off = make_app(
        make_settings(tmp_path / "off", database=False, audit=False, rate_limiting=False),
        router,
    )
    for app, second in ((on, 429), (off, 200)):
        async with app.router.lifespan_context(app), await client_for(app) as client:
            assert (await client.get("/limited")).status_code == 200
            assert (await client.get("/limited")).status_code == second


async def test_one_server_span_per_request_from_the_service_provider(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    settings = make_settings(tmp_path, database=False, audit=False)
    obs = setup_observability(
        observability_settings(settings),
        registry=CollectorRegistry(),
        logging=False,
        span_processor=SimpleSpanProcessor(exporter),
        set_global_tracer_provider=False,
    )
    router = APIRouter(dependencies=[Depends(public)])

    @router.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    app = create_app(settings, routers=[router], observability=obs)
    async with app.router.lifespan_context(app), await client_for(app) as client:
        assert (await client.get("/things/1")).status_code == 200
    servers = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert len(servers) == 1, [s.name for s in exporter.get_finished_spans()]
    assert servers[0].attributes is not None
    assert servers[0].attributes.get("http.route") == "/things/{thing_id}"


@pytest.mark.parametrize("freeze", [True, False])
async def test_start_up_heap_is_frozen_while_serving_and_released_at_shutdown(
    tmp_path: Path, router: APIRouter, freeze: bool
) -> None:
    import gc

    settings = make_settings(tmp_path).model_copy(
        update={"http": make_settings(tmp_path).http.model_copy(update={"freeze_gc": freeze})}
    )
    app = make_app(settings, router)
    gc.unfreeze()
    async with app.router.lifespan_context(app):
        frozen_while_serving = gc.get_freeze_count()
    assert (frozen_while_serving > 0) is freeze
    assert gc.get_freeze_count() == 0
