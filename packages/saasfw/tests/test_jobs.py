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
