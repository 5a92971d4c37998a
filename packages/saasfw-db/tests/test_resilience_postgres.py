"""Acceptance 5 on a real PostgreSQL: killed backends, cancelled requests, pool exhaustion."""

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from saasfw.db import Database, install_exception_handlers

pytestmark = pytest.mark.postgres
POSTGRES_ONLY = pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
DatabaseFactory = Callable[..., Awaitable[Database]]


def build_app(db: Database) -> FastAPI:
    app = FastAPI()
    install_exception_handlers(app)
    Session = Annotated[AsyncSession, db.depends()]

    @app.get("/ping")
    async def ping(session: Session) -> dict[str, int]:
        return {"one": int((await session.execute(text("SELECT 1"))).scalar_one())}

    @app.get("/sleep")
    async def sleep(session: Session) -> dict[str, int]:
        await session.execute(text("SELECT pg_sleep(5)"))
        return {"slept": 5}

    return app


@pytest.fixture
async def db(database_factory: DatabaseFactory) -> Database:
    return await database_factory(None, pool_size=5, max_overflow=5, pool_timeout=10.0)


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(db))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def backends(postgres_url: str, application_name: str) -> tuple[int, int]:
    """(all, non-idle) server backends of this test's application_name."""
    import asyncpg  # type: ignore[import-untyped]

    connection = await asyncpg.connect(postgres_url)
    try:
        row = await connection.fetchrow(
            "SELECT count(*) AS total, count(*) FILTER (WHERE state <> 'idle') AS busy "
            "FROM pg_stat_activity WHERE application_name = $1",
            application_name,
        )
    finally:
        await connection.close()
    return int(row["total"]), int(row["busy"])


async def warm(client: httpx.AsyncClient, count: int) -> None:
    responses = await asyncio.gather(*(client.get("/ping") for _ in range(count)))
    assert all(response.status_code == 200 for response in responses)


@POSTGRES_ONLY
async def test_requests_succeed_after_backends_are_killed(
    db: Database, client: httpx.AsyncClient, postgres_url: str
) -> None:
    await warm(client, 5)
    total, _ = await backends(postgres_url, db.application_name)
    assert total >= 1
    import asyncpg

    admin = await asyncpg.connect(postgres_url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1",
            db.application_name,
        )
    finally:
        await admin.close()
    assert killed == total
    # Pre-ping finds the dead connections at checkout and replaces them: no failed request.
    statuses = [(await client.get("/ping")).status_code for _ in range(20)]
    assert statuses == [200] * 20
    await db.health_check()


@POSTGRES_ONLY
async def test_500_cancelled_requests_leave_pg_stat_activity_at_baseline(
    db: Database, client: httpx.AsyncClient, postgres_url: str
) -> None:
    await warm(client, 5)
    baseline_total, baseline_busy = await backends(postgres_url, db.application_name)
    assert baseline_busy == 0
    rng = random.Random(5)
    cancelled = 0
    busy_at_cancel = 0
    for wave in range(50):  # 50 waves of 10 requests, each cancelled mid-query
        tasks = [asyncio.create_task(client.get("/sleep")) for _ in range(10)]
        await asyncio.sleep(0.05 + rng.random() * 0.1)
        if wave % 10 == 0:
            busy_at_cancel = max(
                busy_at_cancel, (await backends(postgres_url, db.application_name))[1]
            )
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        cancelled += sum(isinstance(result, asyncio.CancelledError) for result in results)
    assert cancelled == 500
    assert busy_at_cancel >= 5, "the requests were cancelled while their queries ran"
    deadline = time.monotonic() + 5.0
    while True:
        total, busy = await backends(postgres_url, db.application_name)
        if busy == 0 and total <= baseline_total:
            break
        assert time.monotonic() < deadline, f"still {total} backends ({busy} busy)"
        await asyncio.sleep(0.1)
    statuses = [(await client.get("/ping")).status_code for _ in range(10)]
    assert statuses == [200] * 10


@POSTGRES_ONLY
async def test_pool_exhausted_by_running_queries_answers_503(
    database_factory: DatabaseFactory,
) -> None:
    db = await database_factory(None, pool_size=1, max_overflow=0, pool_timeout=0.5)
    transport = httpx.ASGITransport(app=build_app(db))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        slow = asyncio.create_task(client.get("/sleep"))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        response = await client.get("/ping")
        elapsed = time.monotonic() - started
        slow.cancel()
        await asyncio.gather(slow, return_exceptions=True)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert elapsed < 0.5 + 2.0  # pool_timeout plus slack on a shared CPU


@POSTGRES_ONLY
async def test_without_pre_ping_a_disconnect_invalidates_the_pool_and_service_recovers(
    database_factory: DatabaseFactory, postgres_url: str
) -> None:
    db = await database_factory(None, pool_size=3, max_overflow=0, pool_pre_ping=False)
    transport = httpx.ASGITransport(app=build_app(db))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await warm(client, 3)
        import asyncpg

        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                db.application_name,
            )
        finally:
            await admin.close()
        first = await client.get("/ping")
        # The dead connection surfaces once, as a clean 503; SQLAlchemy then invalidates the
        # whole pool, so the following requests reconnect instead of failing one by one.
        assert first.status_code in (200, 503)
        if first.status_code == 503:
            assert first.headers["content-type"] == "application/problem+json"
            assert "terminat" not in first.text
        statuses = [(await client.get("/ping")).status_code for _ in range(10)]
    assert statuses == [200] * 10
