"""Wiring saasfw.core's job scheduler: the service's own periodic jobs and audit retention.

Every replica runs the scheduler with the same jobs; each job runs once per period across
the fleet (saasfw.core.jobs). The jobs are the service's own (``create_app(jobs=...)``)
and, when ``audit.retention.keep_days`` is set, the audit purges (the SQL sink's table
once per period for the fleet, each replica's file log by that replica). Every run is
logged and, with audit on, recorded as ``saasfw.job.run``. With messaging on, its outbox
and inbox cleanups join them: one scheduler per process, one job-runs table
(``messaging.job_runs_table``, ``saasfw_job_runs`` by default).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import MetaData, Table

from saasfw.app._part import Part
from saasfw.app._settings import ServiceSettings
from saasfw.audit import AuditLogger, Resource
from saasfw.core import create_missing_tables
from saasfw.core.jobs import Job, JobRun, JobScheduler, JobStats, job_runs_table
from saasfw.db import Database
from saasfw.security import ConfigurationError

__all__ = ["create_job_runs", "job_hook", "wire_jobs"]

_log = logging.getLogger("saasfw.app")


def job_hook(audit: AuditLogger | None) -> Callable[[JobRun], Awaitable[None]]:
    """Every job run in the service's log and, with audit on, as an audit record."""

    async def hook(run: JobRun) -> None:
        if run.succeeded:
            _log.info("job %s ran for period %s on %s", run.job, run.period, run.runner)
        else:
            _log.warning("job %s failed for period %s: %s", run.job, run.period, run.error)
        if audit is not None and audit.running:
            await audit.arecord(
                "saasfw.job.run",
                action="run",
                outcome="success" if run.succeeded else "failure",
                resource=Resource("job", run.job),
                details={"period": run.period, "runner": run.runner, "error": run.error},
            )

    return hook


async def create_job_runs(db: Database, table: Table) -> None:
    """Create the job-runs table when missing; replicas starting together take turns."""
    await create_missing_tables(db.engine, f"saasfw-jobs:{table.name}", table)


class _Schedulers:
    """The schedulers of every app on one metrics registry, their stats summed per job.

    Two apps in one process (the development pair) share the global registry, where a
    second collector with the same metric names would be refused.
    """

    def __init__(self) -> None:
        self.members: list[JobScheduler] = []

    @property
    def stats(self) -> dict[str, JobStats]:
        summed: dict[str, JobStats] = {}
        for scheduler in self.members:
            for name, stats in scheduler.stats.items():
                total = summed.setdefault(name, JobStats())
                total.runs += stats.runs
                total.failures += stats.failures
                total.skipped += stats.skipped
                if stats.last_success is not None:
                    total.last_success = max(total.last_success or 0.0, stats.last_success)
        return summed


_VIEWS: dict[int, _Schedulers] = {}


@contextmanager
def _exported(scheduler: JobScheduler, registry: Any) -> Iterator[None]:
    """``saasfw_job_*`` metrics for ``scheduler`` on ``registry`` while the block runs."""
    if registry is None:
        yield
        return
    view = _VIEWS.get(id(registry))
    if view is None:
        from saasfw.messaging.metrics import register_job_metrics

        view = _VIEWS[id(registry)] = _Schedulers()
        register_job_metrics(registry, view)
    view.members.append(scheduler)
    try:
        yield
    finally:
        view.members.remove(scheduler)


def wire_jobs(
    settings: ServiceSettings,
    jobs: Sequence[Job],
    *,
    db: Database | None,
    audit: AuditLogger | None,
    metrics_registry: Any = None,
) -> Part[JobScheduler] | None:
    """The scheduler as a part, when the service has jobs or audit retention is on.

    With ``metrics_registry`` its runs, failures, skipped periods and last success are
    exported as ``saasfw_job_*`` (per job, on this replica).

    Raises:
        ConfigurationError: jobs were given but the database is off (the scheduler's
            lease rows live there).
    """
    retention = settings.audit.retention
    if audit is not None and retention.keep_days is not None:
        from saasfw.audit import retention_jobs

        jobs = [
            *jobs,
            *retention_jobs(
                audit, keep_days=retention.keep_days, every=retention.every, holds=retention.holds
            ),
        ]
    if not jobs:
        return None
    name = settings.messaging.job_runs_table
    if db is None:
        names = ", ".join(job.name for job in jobs)
        raise ConfigurationError(
            f"scheduled jobs ({names}) need the database: each period's run is leased in "
            f"its {name} table so one replica runs it; turn on components.database "
            "(SAASFW_COMPONENTS__DATABASE=true)"
        )
    table = job_runs_table(name, metadata=MetaData())
    scheduler = JobScheduler(db.engine, table, jobs, hooks=[job_hook(audit)])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await create_job_runs(db, table)
        with _exported(scheduler, metrics_registry):
            async with scheduler:
                yield

    return Part("jobs", scheduler, lifespan=lifespan)
