"""saasfw.core.jobs: one run per period across replicas, failures, take-over, outbox cleanup."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from saasfw.core.jobs import (
    Job,
    JobContext,
    JobRun,
    JobScheduler,
    cleanup_outbox,
    job_runs_table,
    outbox_cleanup_job,
)
from saasfw.core.outbox import outbox_tables, stage_message


@pytest.fixture
async def pg_schema(postgres_url: str) -> AsyncIterator[tuple[str, str]]:
    """A fresh schema on the real PostgreSQL: (asyncpg URL, schema name)."""
    url = postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    schema = f"jobs_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@pytest.mark.postgres
async def test_three_replicas_run_a_job_once_per_period(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    metadata = MetaData()
    runs = job_runs_table(metadata=metadata)
    effects = Table(
        "effects",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("period", Integer, nullable=False),
        Column("runner", String(100), nullable=False),
    )
    engines = [
        create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
        for _ in range(3)
    ]
    async with engines[0].begin() as conn:
        await conn.run_sync(metadata.create_all)
    audited: list[JobRun] = []

    async def audit(run: JobRun) -> None:
        audited.append(run)

    def job_for(engine: AsyncEngine) -> Job:
        async def tick(context: JobContext) -> int:
            async with engine.begin() as conn:
                await conn.execute(
                    insert(effects).values(period=context.period, runner=context.runner)
                )
            return 1

        return Job("tick", 1.0, tick)

    schedulers = [
        JobScheduler(engine, runs, [job_for(engine)], hooks=[audit], tick=0.2) for engine in engines
    ]
    try:
        for scheduler in schedulers:
            await scheduler.start()
        deadline = time.monotonic() + 60
        while True:
            async with engines[0].connect() as conn:
                periods = (
                    await conn.execute(select(func.count(func.distinct(effects.c.period))))
                ).scalar_one()
            if periods >= 5:
                break
            assert time.monotonic() < deadline, "five periods did not run within 60 s"
            await asyncio.sleep(0.2)
    finally:
        for scheduler in schedulers:
            await scheduler.stop()
    async with engines[0].connect() as conn:
        rows = (await conn.execute(select(effects.c.period, effects.c.runner))).all()
        history = (await conn.execute(select(runs))).mappings().all()
    for engine in engines:
        await engine.dispose()
    periods_run = [row.period for row in rows]
    assert len(periods_run) == len(set(periods_run)), f"a period ran twice: {sorted(periods_run)}"
    assert sorted(periods_run) == list(range(min(periods_run), max(periods_run) + 1))
    assert {row["status"] for row in history} == {"succeeded"}
    assert len(history) == len(rows)
    assert sum(s.stats["tick"].runs for s in schedulers) == len(rows)
    assert sorted(run.period for run in audited) == sorted(periods_run)
    assert all(run.succeeded and run.result == 1 for run in audited)
    # Each replica saw the periods it did not run as run by another one.
    assert sum(s.stats["tick"].skipped for s in schedulers) >= len(rows)


async def test_a_failing_run_is_recorded_and_not_retried_within_its_period(
    engine: AsyncEngine,
) -> None:
    runs = job_runs_table()
    async with engine.begin() as conn:
        await conn.run_sync(runs.metadata.create_all)
    calls: list[int] = []
    audited: list[JobRun] = []

    async def broken(context: JobContext) -> None:
        calls.append(context.period)
        raise RuntimeError("the purge target is gone\nSELECT secret FROM t")

    async def audit(run: JobRun) -> None:
        audited.append(run)

    scheduler = JobScheduler(engine, runs, [Job("broken", 3600.0, broken)], hooks=[audit])
    made = await scheduler.run_due()
    assert await scheduler.run_due() == []
    assert len(made) == 1
    assert len(calls) == 1
    assert not made[0].succeeded
    assert made[0].error == "RuntimeError: the purge target is gone"
    assert audited == made
    stats = scheduler.stats["broken"]
    assert (stats.runs, stats.failures, stats.last_success) == (1, 1, None)
    async with engine.connect() as conn:
        row = (await conn.execute(select(runs))).mappings().one()
    assert (row["status"], row["error"]) == ("failed", "RuntimeError: the purge target is gone")
    # A second replica does not run the failed period again either.
    other = JobScheduler(engine, runs, [Job("broken", 3600.0, broken)])
    assert await other.run_due() == []
    assert other.stats["broken"].skipped == 1


async def test_a_run_whose_replica_died_is_taken_over_after_its_lease(engine: AsyncEngine) -> None:
    runs = job_runs_table()
    async with engine.begin() as conn:
        await conn.run_sync(runs.metadata.create_all)
    calls: list[str] = []

    async def work(context: JobContext) -> None:
        calls.append(context.runner)

    job = Job("work", 3600.0, work)
    period = int(time.time() // 3600.0)
    async with engine.begin() as conn:
        await conn.execute(
            insert(runs).values(
                job="work",
                period=period,
                runner="dead-replica",
                status="running",
                lease_until=time.time() + 3600,
                started_at=time.time(),
                attempts=1,
            )
        )
    scheduler = JobScheduler(engine, runs, [job], runner_id="alive")
    assert await scheduler.run_due() == []  # the lease still holds: the period is not taken
    async with engine.begin() as conn:
        await conn.execute(runs.update().values(lease_until=time.time() - 1))
    made = await scheduler.run_due()
    assert [run.runner for run in made] == ["alive"]
    assert calls == ["alive"]
    async with engine.connect() as conn:
        row = (await conn.execute(select(runs))).mappings().one()
    assert (row["status"], row["runner"], row["attempts"]) == ("succeeded", "alive", 2)


async def test_a_run_past_its_timeout_is_cancelled_and_failed(engine: AsyncEngine) -> None:
    runs = job_runs_table()
    async with engine.begin() as conn:
        await conn.run_sync(runs.metadata.create_all)

    async def hangs(context: JobContext) -> None:
        await asyncio.sleep(3600)

    scheduler = JobScheduler(engine, runs, [Job("hangs", 3600.0, hangs, timeout=0.2)])
    [run] = await scheduler.run_due()
    assert not run.succeeded
    assert run.error is not None
    assert "timeout" in run.error


def test_jobs_are_validated() -> None:
    async def noop(context: JobContext) -> None:
        return None

    with pytest.raises(ValueError, match="every must be positive"):
        Job("x", 0, noop)
    with pytest.raises(ValueError, match="1 to 100 characters"):
        Job("", 1, noop)
    scheduler = JobScheduler.__new__(JobScheduler)
    scheduler._entries = {}
    scheduler.add(Job("x", 1, noop))
    with pytest.raises(ValueError, match="already scheduled"):
        scheduler.add(Job("x", 1, noop))


async def test_outbox_cleanup_removes_stale_leases_and_opted_in_idle_counters(
    engine: AsyncEngine,
) -> None:
    tables = outbox_tables("jobs_outbox")
    async with engine.begin() as conn:
        await conn.run_sync(tables.messages.metadata.create_all)
        await stage_message(tables, conn, key="waiting", type="t.v1", payload="{}")
        await stage_message(tables, conn, key="idle", type="t.v1", payload="{}")
        old = time.time() - 10_000
        await conn.execute(tables.messages.delete().where(tables.messages.c.ordering_key == "idle"))
        await conn.execute(tables.keys.update().values(updated_at=old))
        for key in ("waiting", "idle"):
            await conn.execute(
                insert(tables.leases).values(
                    ordering_key=key, leased_by="dead", lease_until=old, retry_at=0.0
                )
            )
    assert await cleanup_outbox(tables, engine) == 1  # idle's lease; waiting keeps its own
    job = outbox_cleanup_job(tables, engine, forget_keys_after=3600)
    assert job.name == "outbox-cleanup:jobs_outbox"
    runs = job_runs_table()
    async with engine.begin() as conn:
        await conn.run_sync(runs.metadata.create_all)
    [run] = await JobScheduler(engine, runs, [job]).run_due()
    assert run.succeeded
    assert run.result == 1
    async with engine.connect() as conn:
        keys = set((await conn.execute(select(tables.keys.c.ordering_key))).scalars())
        leases = set((await conn.execute(select(tables.leases.c.ordering_key))).scalars())
    assert keys == {"waiting"}
    assert leases == {"waiting"}
