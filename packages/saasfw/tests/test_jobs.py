"""create_app(jobs=...): the scheduler runs in the lifespan; jobs without a database refuse."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from saasfw.app import (
    ComponentSwitches,
    Job,
    JobContext,
    ServiceSettings,
    audit_logger,
    create_app,
    singletons_of,
)
from saasfw.security import ConfigurationError


async def _nothing(context: JobContext) -> None:
    return None


def test_jobs_without_the_database_are_refused_with_their_names(tmp_path: Path) -> None:
    settings = ServiceSettings(
        service="jobs-demo",
        env="test",
        data_dir=tmp_path,
        components=ComponentSwitches(database=False, observability=False),
    )
    with pytest.raises(ConfigurationError, match=r"scheduled jobs \(nightly-report\) need"):
        create_app(settings, jobs=[Job("nightly-report", 86_400, _nothing)])


async def test_a_job_runs_in_the_lifespan_and_each_run_is_audited(tmp_path: Path) -> None:
    settings = ServiceSettings(
        service="jobs-demo",
        env="test",
        data_dir=tmp_path,
        components=ComponentSwitches(observability=False),
    )
    periods: list[int] = []

    async def tick(context: JobContext) -> int:
        periods.append(context.period)
        return len(periods)

    app = create_app(settings, jobs=[Job("tick", 0.2, tick)])
    log = tmp_path / "jobs_demo" / "audit" / "audit.jsonl"

    def audited() -> int:
        lines = log.read_text().splitlines() if log.exists() else []
        return sum(1 for line in lines if '"saasfw.job.run"' in line)

    async with app.router.lifespan_context(app):
        logger = singletons_of(app).get(audit_logger)
        deadline = time.monotonic() + 30
        # A run is audited by the scheduler's hook just after it returns: wait for both.
        while len(periods) < 3 or audited() < 3:
            assert time.monotonic() < deadline, (periods, audited())
            logger.flush()
            await asyncio.sleep(0.05)
    assert len(set(periods)) == len(periods)  # once per period
    assert audited() >= 3


async def test_each_jobs_runs_failures_and_last_success_are_exported(tmp_path: Path) -> None:
    import httpx
    from prometheus_client import CollectorRegistry

    from saasfw.app._observability import observability_settings
    from saasfw.observability import setup_observability

    settings = ServiceSettings(service="jobs-metrics", env="test", data_dir=tmp_path)
    obs = setup_observability(
        observability_settings(settings), registry=CollectorRegistry(), logging=False
    )
    calls: list[int] = []

    async def flaky(context: JobContext) -> None:
        calls.append(context.period)
        if len(calls) == 1:
            raise RuntimeError("the first run fails")

    app = create_app(settings, jobs=[Job("flaky", 0.2, flaky)], observability=obs)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        deadline = time.monotonic() + 30
        while True:
            text = (await client.get("/metrics")).text
            if 'saasfw_job_runs_total{job="flaky",outcome="succeeded"} 2.0' in text:
                break
            assert time.monotonic() < deadline, text[-2000:]
            await asyncio.sleep(0.05)
    assert 'saasfw_job_runs_total{job="flaky",outcome="failed"} 1.0' in text
    assert 'saasfw_job_last_success_timestamp_seconds{job="flaky"}' in text
