"""FastAPI integration on SQLite and PostgreSQL: problem+json, paging input, pool timeout."""

# No "from __future__ import annotations": FastAPI resolves the local Annotated aliases.
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header
from pydantic import BaseModel
from sqlalchemy import MetaData, String, UniqueConstraint, event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from saasfw.db import (
    Database,
    PageQuery,
    Repository,
    SortKey,
    TimestampMixin,
    UUIDPrimaryKey,
    VersionMixin,
    install_exception_handlers,
    page_query,
)

DatabaseFactory = Callable[..., Awaitable[Database]]
DRIVER_WORDS = ("sqlite", "asyncpg", "INSERT", "UPDATE", "SELECT", "duplicate key", "UNIQUE")


class Model(DeclarativeBase):
    metadata = MetaData()


class Widget(UUIDPrimaryKey, TimestampMixin, VersionMixin, Model):
    __tablename__ = "widgets"
    __table_args__ = (UniqueConstraint("name"),)

    name: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(default=0)


class WidgetRepository(Repository[Widget]):
    model = Widget
    filterable = frozenset({"size"})
    sortable = frozenset({"name", "size"})
    default_sort = (SortKey("name"),)


class WidgetIn(BaseModel):
    name: str
    size: int = 0


def widget_out(widget: Widget) -> dict[str, Any]:
    return {"id": str(widget.id), "name": widget.name, "size": widget.size, "v": widget.version}


def build_app(db: Database) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)
    Session = Annotated[AsyncSession, db.depends()]
    Paging = Annotated[PageQuery, Depends(page_query)]

    @app.post("/widgets", status_code=201)
    async def create(body: WidgetIn, session: Session) -> dict[str, Any]:
        return widget_out(await WidgetRepository(session).add(Widget(**body.model_dump())))

    @app.post("/widgets/unflushed", status_code=201)
    async def create_unflushed(body: WidgetIn, session: Session) -> dict[str, str]:
        session.add(Widget(**body.model_dump()))  # the duplicate surfaces at commit
        return {"status": "accepted"}

    @app.get("/widgets/{key}")
    async def read(key: uuid.UUID, session: Session) -> dict[str, Any]:
        return widget_out(await WidgetRepository(session).get(key))

    @app.patch("/widgets/{key}")
    async def patch(
        key: uuid.UUID, body: WidgetIn, session: Session, if_match: Annotated[int, Header()]
    ) -> dict[str, Any]:
        repo = WidgetRepository(session)
        return widget_out(await repo.update(key, body.model_dump(), expected_version=if_match))

    @app.get("/widgets")
    async def listing(session: Session, paging: Paging) -> dict[str, Any]:
        repo = WidgetRepository(session)
        page = await repo.page(
            repo.keyset_request(limit=paging.limit, cursor=paging.cursor, sort=paging.sort)
        )
        return {"items": [widget_out(w) for w in page.items], "next": page.next_cursor}

    @app.get("/widgets-by-offset")
    async def by_offset(session: Session, paging: Paging) -> dict[str, Any]:
        repo = WidgetRepository(session)
        page = await repo.page_offset(
            repo.offset_request(limit=paging.limit, offset=paging.offset, sort=paging.sort)
        )
        return {"items": [widget_out(w) for w in page.items], "total": page.total}

    @app.get("/ping")
    async def ping(session: Session) -> dict[str, int]:
        return {"one": int((await session.execute(text("SELECT 1"))).scalar_one())}

    return app


@pytest.fixture
async def db(database_factory: DatabaseFactory) -> Database:
    return await database_factory(Model.metadata, pool_size=2, max_overflow=0, pool_timeout=1.0)


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(db))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    for word in DRIVER_WORDS:
        assert word not in response.text, word
    return body


async def test_create_read_and_404(client: httpx.AsyncClient) -> None:
    created = await client.post("/widgets", json={"name": "gear", "size": 3})
    assert created.status_code == 201
    read = await client.get(f"/widgets/{created.json()['id']}")
    assert read.json()["name"] == "gear"
    assert_problem(await client.get(f"/widgets/{uuid.uuid4()}"), 404, "db.not_found")


async def test_duplicate_key_is_409_also_when_found_at_commit(client: httpx.AsyncClient) -> None:
    await client.post("/widgets", json={"name": "gear"})
    assert_problem(await client.post("/widgets", json={"name": "gear"}), 409, "db.duplicate_key")
    # Found by the dependency's commit after the endpoint returned: still an error response.
    response = await client.post("/widgets/unflushed", json={"name": "gear"})
    assert_problem(response, 409, "db.duplicate_key")


async def test_stale_version_is_409(client: httpx.AsyncClient) -> None:
    key = (await client.post("/widgets", json={"name": "gear"})).json()["id"]
    ok = await client.patch(f"/widgets/{key}", json={"name": "cog"}, headers={"If-Match": "1"})
    assert ok.json()["v"] == 2
    stale = await client.patch(f"/widgets/{key}", json={"name": "x"}, headers={"If-Match": "1"})
    assert_problem(stale, 409, "db.stale_version")


async def test_keyset_listing_over_http(client: httpx.AsyncClient) -> None:
    for i in range(7):
        await client.post("/widgets", json={"name": f"w{i}", "size": i % 3})
    names: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", "sort": "-size,name"} | ({"cursor": cursor} if cursor else {})
        body = (await client.get("/widgets", params=params)).json()
        names += [item["name"] for item in body["items"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert sorted(names) == [f"w{i}" for i in range(7)]
    assert len(names) == 7


HOSTILE = [
    ("/widgets", {"limit": "-1"}),
    ("/widgets", {"limit": "0"}),
    ("/widgets", {"limit": "99999999999999999999"}),
    ("/widgets", {"limit": "1e3"}),
    ("/widgets", {"limit": "ten"}),
    ("/widgets", {"sort": "secret_column"}),
    ("/widgets", {"sort": "name;DROP TABLE widgets"}),
    ("/widgets", {"sort": "name) UNION SELECT 1--"}),
    ("/widgets", {"sort": "name,name"}),
    ("/widgets", {"sort": "-" * 5000}),
    ("/widgets", {"sort": "name,size,name,size,name"}),
    ("/widgets", {"cursor": "garbage"}),
    ("/widgets", {"cursor": "eyJ2IjoxfQ.AAAA"}),
    ("/widgets", {"cursor": "x" * 20_000}),
    ("/widgets-by-offset", {"offset": "-5"}),
    ("/widgets-by-offset", {"offset": "10000001"}),
    ("/widgets-by-offset", {"offset": "0x10"}),
]


@pytest.mark.parametrize(("path", "params"), HOSTILE)
async def test_hostile_paging_input_is_400_and_runs_no_sql(
    db: Database, client: httpx.AsyncClient, path: str, params: dict[str, str]
) -> None:
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        response = await client.get(path, params=params)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert_problem(response, 400, "db.invalid_query")
    assert statements == []
    # The listener does see SQL when the input is fine.
    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    try:
        assert (await client.get(path, params={"limit": "5"})).status_code == 200
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", count)
    assert statements


async def test_pool_exhaustion_answers_503_within_pool_timeout(
    db: Database, client: httpx.AsyncClient
) -> None:
    held = [await db.engine.connect() for _ in range(2)]  # the whole pool (2, no overflow)
    try:
        for connection in held:
            await connection.execute(text("SELECT 1"))
        started = time.monotonic()
        response = await client.get("/ping")
        elapsed = time.monotonic() - started
    finally:
        for connection in held:
            await connection.close()
    body = assert_problem(response, 503, "db.database_unavailable")
    assert response.headers["retry-after"] == "1"
    assert "retry" in body["detail"]
    assert elapsed < 1.0 + 2.0  # pool_timeout plus scheduling slack on a shared CPU
    assert (await client.get("/ping")).json() == {"one": 1}  # and it recovers
