"""The messaging housekeeping jobs, for ``saasfw.core.jobs.JobScheduler``.

Inbox rows are pruned after ``inbox_retention`` (which the settings keep longer than the
broker's redelivery horizon), and the outbox's stale leases are cleaned, each once per
``cleanup_interval`` across the fleet.
"""

from __future__ import annotations

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from saasfw.core.jobs import Job, JobContext, outbox_cleanup_job
from saasfw.core.outbox import OutboxTables
from saasfw.messaging._inbox import prune_inbox
from saasfw.messaging._settings import MessagingSettings

__all__ = ["inbox_cleanup_job", "messaging_jobs"]


def inbox_cleanup_job(
    engine: AsyncEngine, inbox: Table, *, retention: float, every: float = 3600.0
) -> Job:
    """A job deleting inbox rows older than ``retention`` seconds, once per ``every``."""
    if retention <= 0:
        raise ValueError(f"retention must be positive seconds, got {retention}")

    async def run(context: JobContext) -> int:
        return await prune_inbox(engine, inbox, older_than=retention)

    return Job(f"inbox-cleanup:{inbox.name}", every, run)


def messaging_jobs(
    settings: MessagingSettings, engine: AsyncEngine, outbox: OutboxTables, inbox: Table
) -> list[Job]:
    """The outbox and inbox cleanup jobs, as the settings configure them."""
    return [
        outbox_cleanup_job(outbox, engine, every=settings.cleanup_interval),
        inbox_cleanup_job(
            engine, inbox, retention=settings.inbox_retention, every=settings.cleanup_interval
        ),
    ]
