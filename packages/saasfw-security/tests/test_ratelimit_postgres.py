"""The PostgreSQL rate-limit storage against a real PostgreSQL (one schema per test).

- exactness: three OS processes hammer one key, for each strategy; exactly the limit is
  admitted, and the stored count says so too;
- the same decisions and figures as the memory storage, hit for hit;
- one SQL statement per limit hit (counted at the driver boundary), and the per-hit cost
  measured (printed with ``-s``; never asserted);
- windows expire, and expired rows are deleted (explicitly and by the background purge);
- the table is created once however many storages race to create it;
- HTTP through the middleware and the ``RateLimit`` dependency: 429 with the headers.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI

from saasfw.security import RateLimit, RateLimiter, RateLimitPolicy, RateLimitSettings
from saasfw.security._ratelimit_postgres import TABLE, PostgresRateLimitStorage
from saasfw.security.ratelimit import RateLimitMiddleware, rate_limit_production_problems

pytest.importorskip("asyncpg")
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

pytestmark = pytest.mark.postgres

BOUND = 60.0  # seconds; generous on purpose (shared 2-core machine), never a speed claim
STRATEGIES = ["fixed-window", "sliding-window-counter", "moving-window"]
SCOPE: dict[str, Any] = {"type": "http", "client": ("192.0.2.7", 4000), "headers": []}

Settings = Callable[..., RateLimitSettings]


@pytest.fixture
async def admin(postgres_url: str) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """An engine on the test database and a fresh schema name, dropped afterwards."""
    engine = create_async_engine(postgres_url.replace("postgresql://", "postgresql+asyncpg://"))
    schema = f"sec_rl_{secrets.token_hex(6)}"
    try:
        yield engine, schema
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await engine.dispose()


@pytest.fixture
def settings(postgres_url: str, admin: tuple[AsyncEngine, str]) -> Settings:
    def make(**overrides: Any) -> RateLimitSettings:
        values: dict[str, Any] = {
            "storage_url": postgres_url,
            "postgres_schema": admin[1],
            # A busy shared machine: the default 0.25 s would make slow answers failures.
            "storage_timeout": 5.0,
        }
        return RateLimitSettings.model_validate(values | overrides)

    return make


async def _rows(admin: tuple[AsyncEngine, str]) -> list[Any]:
    engine, schema = admin
    async with engine.connect() as conn:
        result = await conn.execute(
            text(f'SELECT key, cur, prev, times FROM "{schema}".{TABLE}')  # noqa: S608
        )
        return list(result.all())


def test_postgresql_counts_for_the_whole_fleet() -> None:
    for url in ("postgresql://u@db/app", "postgresql+asyncpg://u@db/app"):
        settings = RateLimitSettings.model_validate({"storage_url": url})
        assert settings.uses_postgres_storage
        assert not settings.uses_memory_storage
        assert rate_limit_production_problems(settings, workers=8) == []
        assert repr(RateLimiter(settings)).startswith("RateLimiter(storage=postgresql")
    with pytest.raises(ValueError, match="postgres_schema"):
        RateLimitSettings.model_validate({"postgres_schema": 'x"; DROP TABLE y; --'})


CHILD = """
import asyncio, sys
from saasfw.security import RateLimiter, RateLimitPolicy, RateLimitSettings

async def main(url, schema, strategy, limit, attempts):
    limiter = RateLimiter(RateLimitSettings(
        storage_url=url, postgres_schema=schema, strategy=strategy, storage_timeout=5.0,
        pool_timeout=60.0, postgres_max_connections=8,
    ))
    await limiter.health_check()  # connected, table created
    print("ready", flush=True)
    sys.stdin.readline()
    policy = RateLimitPolicy(name="burst", limits=limit, key="global")
    scope = {"type": "http", "client": ("192.0.2.1", 1), "headers": []}
    decisions = await asyncio.gather(*(limiter.check(policy, scope) for _ in range(attempts)))
    admitted = sum(d.allowed and not d.storage_failed for d in decisions)
    failed = sum(d.storage_failed for d in decisions)
    print(admitted, failed, flush=True)
    await limiter.aclose()

asyncio.run(main(*sys.argv[1:5], int(sys.argv[5])))
"""


@pytest.mark.slow
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_three_processes_on_one_key_admit_exactly_the_limit(
    strategy: str, postgres_url: str, admin: tuple[AsyncEngine, str]
) -> None:
    # Per day for the sliding counter: its window must not turn over during the test (the
    # previous window's weighted count would then add capacity by design).
    limit, attempts = 100, 150
    notation = f"{limit}/day" if strategy == "sliding-window-counter" else f"{limit}/hour"
    args = [postgres_url, admin[1], strategy, notation, str(attempts)]
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            line = await asyncio.wait_for(child.stdout.readline(), BOUND)
            assert line.strip() == b"ready", line
        for child in children:  # all three start together
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
        results = []
        for child in children:
            out, _ = await asyncio.wait_for(child.communicate(), BOUND)
            assert child.returncode == 0
            admitted, failed = map(int, out.split())
            results.append((admitted, failed))
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert [failed for _, failed in results] == [0, 0, 0]
    assert sum(admitted for admitted, _ in results) == limit, results
    rows = await _rows(admin)
    assert len(rows) == 1
    _, cur, _, times = rows[0]
    if strategy == "fixed-window":
        assert cur == 3 * attempts  # as in ``limits``, refused hits count in a fixed window
    else:
        assert (len(times) if strategy == "moving-window" else cur) == limit


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_decisions_and_figures_match_the_memory_storage(
    strategy: str, settings: Settings
) -> None:
    policy = RateLimitPolicy(name="same", limits="4/hour;6/day", key="address", cost=1)
    heavy = RateLimitPolicy(name="heavy", limits="5/hour", key="address", cost=2)
    memory = RateLimiter(RateLimitSettings.model_validate({"strategy": strategy}))
    postgres = RateLimiter(settings(strategy=strategy))
    try:
        for chosen in [policy] * 6 + [heavy] * 4:
            expected = await memory.check(chosen, SCOPE)
            got = await postgres.check(chosen, SCOPE)
            assert not got.storage_failed
            assert (got.allowed, got.limit, got.window, got.remaining) == (
                expected.allowed,
                expected.limit,
                expected.window,
                expected.remaining,
            ), chosen
            if not got.allowed:
                assert got.retry_after >= 1
    finally:
        await postgres.aclose()


async def test_one_statement_per_hit_and_its_cost(settings: Settings) -> None:
    limiter = RateLimiter(settings(strategy="sliding-window-counter"))
    policy = RateLimitPolicy(name="cost", limits="1000000/hour", key="global")
    await limiter.health_check()  # connect and create the table outside the count
    await limiter.check(policy, SCOPE)  # the statement is prepared once per connection
    storage = limiter._sql
    assert storage is not None
    statements: list[str] = []

    def counted(*args: Any) -> None:
        statements.append(args[2])

    event.listen(storage.engine.sync_engine, "before_cursor_execute", counted)
    hits = 2000
    latencies = []
    for _ in range(hits):
        started = time.perf_counter()
        decision = await limiter.check(policy, SCOPE)
        latencies.append(time.perf_counter() - started)
        assert decision.allowed
        assert not decision.storage_failed
    event.remove(storage.engine.sync_engine, "before_cursor_execute", counted)
    await limiter.aclose()
    # Background purges are statements too; every other one is the hit itself.
    hit_statements = [s for s in statements if "ON CONFLICT" in s]
    assert len(hit_statements) == hits
    assert all(s.lstrip().startswith("DELETE") for s in statements if "ON CONFLICT" not in s)
    print(
        f"\nPostgreSQL rate-limit hit: 1 statement; mean {statistics.mean(latencies) * 1e6:.0f}"
        f" us, median {statistics.median(latencies) * 1e6:.0f} us over {hits} checks"
    )


async def _until_allowed(limiter: RateLimiter, policy: RateLimitPolicy) -> None:
    deadline = time.monotonic() + BOUND
    while not (await limiter.check(policy, SCOPE)).allowed:
        assert time.monotonic() < deadline, "the window never expired"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_a_window_expires(strategy: str, settings: Settings) -> None:
    limiter = RateLimiter(settings(strategy=strategy))
    policy = RateLimitPolicy(name="short", limits="2/second", key="global")
    try:
        refused = None
        for _ in range(10):  # a window may turn over between two hits on a slow machine
            decision = await limiter.check(policy, SCOPE)
            if not decision.allowed:
                refused = decision
                break
        assert refused is not None
        assert not refused.storage_failed
        await _until_allowed(limiter, policy)
    finally:
        await limiter.aclose()


async def test_expired_windows_are_deleted(
    settings: Settings, admin: tuple[AsyncEngine, str]
) -> None:
    limiter = RateLimiter(settings(strategy="fixed-window", postgres_purge_interval=0.2))
    short = RateLimitPolicy(name="short", limits="5/second", key="address")
    long = RateLimitPolicy(name="long", limits="5/hour", key="address")
    try:
        for index in range(20):
            scope = SCOPE | {"client": (f"198.51.100.{index}", 1)}
            assert (await limiter.check(short, scope)).allowed
        assert (await limiter.check(long, SCOPE)).allowed
        assert len(await _rows(admin)) == 21
        storage = limiter._sql
        assert storage is not None
        # The background purge runs after hits, at most every purge_interval seconds.
        deadline = time.monotonic() + BOUND
        while storage.purged < 20:
            assert time.monotonic() < deadline, "expired windows were never purged"
            await limiter.check(long, SCOPE)
            await asyncio.sleep(0.25)
        rows = await _rows(admin)
        assert [row[0].split("/")[2] for row in rows] == ["long"]  # the live window stays
        assert await storage.purge() == 0
    finally:
        await limiter.aclose()


async def test_storages_racing_to_create_the_table(
    postgres_url: str, admin: tuple[AsyncEngine, str]
) -> None:
    url = postgres_url.replace("postgresql://", "postgresql+asyncpg://")
    engines = [create_async_engine(url) for _ in range(6)]
    # Engines of the application's own (not in AUTOCOMMIT): each hit must still commit.
    storages = [PostgresRateLimitStorage(e, schema=admin[1]) for e in engines]
    try:
        await asyncio.gather(*(s.create_table() for s in storages))
        results = await asyncio.gather(*(s.hit("k", 3, 60, 1) for s in storages))
        assert sorted(allowed for allowed, _, _ in results) == [False] * 3 + [True] * 3
    finally:
        for storage, engine in zip(storages, engines, strict=True):
            await storage.aclose()  # stops a background purge; the engine stays ours
            await engine.dispose()


async def test_http_refusal_carries_the_headers(settings: Settings) -> None:
    limiter = RateLimiter(settings(default_limits=("100/minute",), headers=True))
    app = FastAPI()

    @app.post("/login", dependencies=[Depends(RateLimit("2/minute", sensitive=True))])
    async def login() -> dict[str, bool]:
        return {"ok": True}

    app.add_middleware(RateLimitMiddleware, limiter=limiter)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            statuses = [(await client.post("/login")).status_code for _ in range(2)]
            refused = await client.post("/login")
        assert statuses == [200, 200]
        assert refused.status_code == 429
        assert refused.headers["ratelimit"].startswith('"route";r=0;t=')
        assert int(refused.headers["retry-after"]) >= 1
    finally:
        await limiter.aclose()


async def test_a_dropped_table_is_created_again(
    settings: Settings, admin: tuple[AsyncEngine, str]
) -> None:
    limiter = RateLimiter(settings(on_storage_error="closed"))
    policy = RateLimitPolicy(name="again", limits="10/hour", key="global")
    try:
        assert (await limiter.check(policy, SCOPE)).allowed
        engine, schema = admin
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        failed = await limiter.check(policy, SCOPE)  # this one finds no table: fails closed
        assert failed.storage_failed
        assert not failed.allowed
        again = await limiter.check(policy, SCOPE)
        assert again.allowed
        assert not again.storage_failed
        assert again.remaining == 9
    finally:
        await limiter.aclose()


async def test_waiting_for_a_pooled_connection_is_contention_not_an_outage(
    settings: Settings,
) -> None:
    limiter = RateLimiter(settings(postgres_max_connections=1, pool_timeout=0.2, degraded_after=1))
    policy = RateLimitPolicy(name="busy", limits="10/hour", key="global")
    try:
        await limiter.health_check()
        storage = limiter._sql
        assert storage is not None
        async with storage.engine.connect():  # the only pooled connection is taken
            decision = await limiter.check(policy, SCOPE)
        assert decision.storage_failed
        assert not decision.allowed  # closed by default: this request alone
        assert limiter.contention >= 1
        assert limiter.storage_errors == 0
        assert not limiter.degraded
        assert (await limiter.check(policy, SCOPE)).allowed
    finally:
        await limiter.aclose()


@pytest.mark.parametrize("strategy", ["sliding-window-counter", "moving-window"])
async def test_a_hit_that_started_before_a_window_edge_never_moves_the_row_back(
    strategy: str, postgres_url: str, admin: tuple[AsyncEngine, str]
) -> None:
    """now() is taken when a statement starts, before it waits for the row lock: a hit
    that started in window w can write after one that started in w + 1."""
    engine = admin[0]
    storage = PostgresRateLimitStorage(engine, strategy=strategy, schema=admin[1])  # type: ignore[arg-type]
    params = {"key": storage.key_prefix + "edge", "limit": 100, "expiry": 1, "cost": 1}
    try:
        await storage.create_table()
        async with engine.connect() as late:
            async with late.begin():
                started = (await late.execute(text("SELECT extract(epoch FROM now())"))).scalar()
                # Wait for the 1-second window to turn over (same host, same clock).
                await asyncio.sleep(max(0.0, int(started) + 1.05 - time.time()))
                assert (await storage.hit("edge", 100, 1, 1))[0]  # a hit in window w + 1
                row = (await late.execute(storage._hit, params)).one()  # now() still in w
            assert row[0]
        rows = await _rows(admin)
        _, cur, _, times = rows[0]
        assert (len(times) if strategy == "moving-window" else cur) == 2  # nothing was lost
        if strategy == "moving-window":
            assert times == sorted(times, reverse=True)
    finally:
        await storage.aclose()
