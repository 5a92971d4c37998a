"""The scheduler: run each periodic job once per period across every replica.

Every replica runs a :class:`JobScheduler` with the same jobs. Time is cut into periods of
``job.every`` seconds (period ``n`` starts at ``n * every`` epoch seconds); at the start of
each period every replica tries to insert the row ``(job, n)`` of the job-runs table, and
only the one whose insert creates it runs the job. A run that never finishes (its replica
died) holds the period until its lease (the job's timeout plus a margin) runs out; the
next replica to look then takes the period over. So a job runs exactly once per period
while replicas stay up, and at least once when one dies in the middle of a run.

A failed run is not retried within its period: the next period runs the job again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Table, and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from saasfw.core._background import BackgroundLoop
from saasfw.core.outbox._stage import upsert

__all__ = ["Job", "JobContext", "JobRun", "JobScheduler", "JobStats", "RunHook"]

logger = logging.getLogger("saasfw.core.jobs")

_LEASE_MARGIN = 30.0


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a job function receives: which job, which period, on which replica."""

    job: str
    period: int
    period_start: float
    runner: str


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic task.

    Args:
        name: unique among the service's jobs (it keys the lease row), at most 100 chars.
        every: the period in seconds; the job runs once per period, near its start.
        run: the coroutine function; its return value is passed to the hooks (a count of
            rows purged, say). Raising marks the run failed.
        timeout: the run is cancelled after this many seconds (default: ``every``); the
            lease lasts the timeout plus 30 s.
    """

    name: str
    every: float
    run: Callable[[JobContext], Awaitable[object]]
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.name or len(self.name) > 100:
            raise ValueError(f"a job name is 1 to 100 characters, got {self.name!r}")
        if not self.every > 0:
            raise ValueError(f"job {self.name!r}: every must be positive seconds")
        if self.timeout is not None and not self.timeout > 0:
            raise ValueError(f"job {self.name!r}: timeout must be positive seconds")

    @property
    def budget(self) -> float:
        """How long one run may take before it is cancelled."""
        return self.timeout if self.timeout is not None else self.every


@dataclass(frozen=True, slots=True)
class JobRun:
    """One run this replica made, as the hooks (audit, metrics) receive it."""

    job: str
    period: int
    runner: str
    started_at: float
    finished_at: float
    succeeded: bool
    error: str | None = None
    result: object = None


@dataclass(slots=True)
class JobStats:
    """Per job, on this replica: runs made, failures, periods others ran, last success."""

    runs: int = 0
    failures: int = 0
    skipped: int = 0
    last_success: float | None = None
    last_error: str | None = None


RunHook = Callable[[JobRun], Awaitable[None]]


def default_runner_id() -> str:
    """Host, process and a random part: unique per process life, readable in a row."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _describe(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]


@dataclass(slots=True)
class _Entry:
    job: Job
    stats: JobStats = field(default_factory=JobStats)
    settled: int | None = None  # the last period known to be run (by anyone)
    skipped: int | None = None  # the last period counted as run by another replica


class JobScheduler(BackgroundLoop):
    """Run jobs once per period across the fleet; run it in every replica's lifespan.

    Args:
        engine: the service's async engine (PostgreSQL in a fleet; SQLite works alone).
        table: the job-runs table (:func:`job_runs_table`).
        jobs: the jobs to run; more can be added with :meth:`add` before :meth:`start`.
        hooks: awaited after every run this replica made, successful or not (audit
            records, metrics); a hook that raises is logged and does not stop the others.
        keep_history: run rows older than this many seconds are deleted.
        tick: how often periods another replica holds are looked at again (to take over
            a run whose replica died).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        jobs: Iterable[Job] = (),
        *,
        hooks: Sequence[RunHook] = (),
        runner_id: str | None = None,
        keep_history: float = 7 * 86_400.0,
        tick: float = 5.0,
    ) -> None:
        self.engine = engine
        self.table = table
        self.runner_id = runner_id or default_runner_id()
        self.hooks = list(hooks)
        self._keep = keep_history
        self._tick = tick
        self._entries: dict[str, _Entry] = {}
        self._task: asyncio.Task[None] | None = None
        for job in jobs:
            self.add(job)

    def add(self, job: Job) -> None:
        """Schedule ``job``; its name must be unique."""
        if job.name in self._entries:
            raise ValueError(f"a job named {job.name!r} is already scheduled")
        self._entries[job.name] = _Entry(job)

    @property
    def jobs(self) -> list[Job]:
        """The scheduled jobs."""
        return [entry.job for entry in self._entries.values()]

    @property
    def stats(self) -> dict[str, JobStats]:
        """Per job name: what metrics read."""
        return {name: entry.stats for name, entry in self._entries.items()}

    async def _claim(self, job: Job, period: int, now: float) -> str:
        """``claimed`` (run it), ``running`` (another replica holds it) or ``done``."""
        runs = self.table
        lease = now + job.budget + _LEASE_MARGIN
        async with self.engine.begin() as conn:
            statement = upsert(conn.dialect.name, runs).values(
                job=job.name,
                period=period,
                runner=self.runner_id,
                status="running",
                lease_until=lease,
                started_at=now,
                attempts=1,
            )
            statement = statement.on_conflict_do_update(
                index_elements=[runs.c.job, runs.c.period],
                set_={
                    "runner": self.runner_id,
                    "lease_until": lease,
                    "started_at": now,
                    "attempts": runs.c.attempts + 1,
                },
                # Only a run whose replica died (still running, lease over) is taken over.
                where=and_(runs.c.status == "running", runs.c.lease_until < now),
            ).returning(runs.c.job)
            if (await conn.execute(statement)).first() is not None:
                return "claimed"
            status = (
                await conn.execute(
                    select(runs.c.status).where(runs.c.job == job.name, runs.c.period == period)
                )
            ).scalar_one_or_none()
        return "running" if status in (None, "running") else "done"

    async def _finish(self, run: JobRun) -> None:
        runs = self.table
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(runs)
                .where(
                    runs.c.job == run.job,
                    runs.c.period == run.period,
                    runs.c.runner == self.runner_id,
                )
                .values(
                    status="succeeded" if run.succeeded else "failed",
                    finished_at=run.finished_at,
                    error=run.error,
                )
            )
            await conn.execute(
                delete(runs).where(
                    runs.c.job == run.job, runs.c.started_at < time.time() - self._keep
                )
            )
        if not result.rowcount:
            logger.warning(
                "job %s period %s outlived its lease and another replica took it over",
                run.job,
                run.period,
            )

    async def _execute(self, entry: _Entry, period: int, started: float) -> JobRun:
        job = entry.job
        context = JobContext(job.name, period, period * job.every, self.runner_id)
        try:
            async with asyncio.timeout(job.budget):
                result = await job.run(context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = (
                "TimeoutError: the run exceeded its timeout"
                if isinstance(exc, TimeoutError)
                else _describe(exc)
            )
            run = JobRun(job.name, period, self.runner_id, started, time.time(), False, error)
            entry.stats.failures += 1
            entry.stats.last_error = error
            logger.error("job %s period %s failed: %s", job.name, period, error)
        else:
            run = JobRun(job.name, period, self.runner_id, started, time.time(), True, None, result)
            entry.stats.last_success = run.finished_at
        entry.stats.runs += 1
        return run

    async def _notify(self, run: JobRun) -> None:
        for hook in self.hooks:
            try:
                await hook(run)
            except Exception as exc:
                logger.warning("a job-run hook failed for %s: %s", run.job, _describe(exc))

    async def run_due(self) -> list[JobRun]:
        """Run every job whose current period nobody ran yet; return this replica's runs."""
        made: list[JobRun] = []
        for entry in self._entries.values():
            now = time.time()
            period = math.floor(now / entry.job.every)
            if entry.settled == period:
                continue
            claim = await self._claim(entry.job, period, now)
            if claim != "claimed":
                if entry.skipped != period:
                    entry.skipped = period
                    entry.stats.skipped += 1
                if claim == "done":
                    entry.settled = period
                # Still running elsewhere: look again next tick, to take it over if that
                # replica died.
                continue
            entry.settled = period
            run = await self._execute(entry, period, now)
            await self._finish(run)
            await self._notify(run)
            made.append(run)
        return made

    def _pause(self) -> float:
        now = time.time()
        boundaries = [
            (math.floor(now / e.job.every) + 1) * e.job.every - now for e in self._entries.values()
        ]
        return max(0.01, min([self._tick, *boundaries]))

    async def run(self) -> None:
        """Run due jobs until cancelled; database errors are logged and retried."""
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("job scheduler round failed: %s", _describe(exc))
            await asyncio.sleep(self._pause())

    @property
    def task_name(self) -> str:
        """The background task's name."""
        return f"job-scheduler-{self.runner_id}"
