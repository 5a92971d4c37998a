"""Wiring saasfw.core's job scheduler: the service's own periodic jobs and audit retention.

Every replica runs the scheduler with the same jobs; each job runs once per period across
the fleet (saasfw.core.jobs). The jobs are the service's own (``create_app(jobs=...)``)
and, when ``audit.retention.keep_days`` is set, the audit purges (the SQL sink's table
once per period for the fleet, each replica's file log by that replica). Every run is
logged and, with audit on, recorded as ``saasfw.job.run``. The messaging part runs its
housekeeping jobs on the same table with the same hook.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import MetaData, Table

from saasfw.app._part import Part
from saasfw.app._settings import ServiceSettings
from saasfw.audit import AuditLogger, Resource
from saasfw.core import create_missing_tables
from saasfw.core.jobs import Job, JobRun, JobScheduler, job_runs_table
from saasfw.db import Database
from saasfw.security import ConfigurationError

__all__ = ["JOB_RUNS_TABLE", "create_job_runs", "job_hook", "wire_jobs"]

JOB_RUNS_TABLE = "saasfw_job_runs"

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


def wire_jobs(
    settings: ServiceSettings,
    jobs: Sequence[Job],
    *,
    db: Database | None,
    audit: AuditLogger | None,
) -> Part[JobScheduler] | None:
    """The scheduler as a part, when the service has jobs or audit retention is on.

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
    if db is None:
        names = ", ".join(job.name for job in jobs)
        raise ConfigurationError(
            f"scheduled jobs ({names}) need the database: each period's run is leased in "
            f"its {JOB_RUNS_TABLE} table so one replica runs it; turn on components.database "
            "(SAASFW_COMPONENTS__DATABASE=true)"
        )
    table = job_runs_table(JOB_RUNS_TABLE, metadata=MetaData())
    scheduler = JobScheduler(db.engine, table, jobs, hooks=[job_hook(audit)])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await create_job_runs(db, table)
        async with scheduler:
            yield

    return Part("jobs", scheduler, lifespan=lifespan)
