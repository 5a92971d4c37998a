"""saasfw.core.jobs: periodic jobs that run on exactly one replica per period.

Needs the ``[sql]`` extra (SQLAlchemy). Every replica runs a :class:`JobScheduler` with the
same jobs; a row per job and period in the job-runs table (:func:`job_runs_table`) decides
which replica runs each period. Hooks receive every run (audit it, count it). The outbox's
own housekeeping is a ready-made job (:func:`outbox_cleanup_job`).
"""

from __future__ import annotations

try:
    import sqlalchemy  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the isolation check
    raise ImportError("saasfw.core.jobs needs SQLAlchemy: pip install 'saasfw-core[sql]'") from exc

from saasfw.core.jobs._builtin import cleanup_outbox, outbox_cleanup_job
from saasfw.core.jobs._scheduler import Job, JobContext, JobRun, JobScheduler, JobStats, RunHook
from saasfw.core.jobs._table import job_runs_table

__all__ = [
    "Job",
    "JobContext",
    "JobRun",
    "JobScheduler",
    "JobStats",
    "RunHook",
    "cleanup_outbox",
    "job_runs_table",
    "outbox_cleanup_job",
]
