"""The messaging housekeeping jobs: the inbox is pruned after its retention, once per period."""

from __future__ import annotations

import time

from pydantic import SecretStr
from sqlalchemy import MetaData, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from saasfw.core.jobs import JobScheduler, job_runs_table
from saasfw.core.outbox import outbox_tables
from saasfw.messaging import MessagingSettings, inbox_cleanup_job, inbox_table, messaging_jobs


async def test_messaging_jobs_prune_the_inbox_past_its_retention(engine: AsyncEngine) -> None:
    settings = MessagingSettings(
        inbox_retention=2 * 86_400.0, signing_key=SecretStr("k" * 32), signing_key_id="k1"
    )
    metadata = MetaData()
    inbox = inbox_table(settings.inbox_table, metadata=metadata)
    outbox = outbox_tables(settings.outbox_table, metadata=metadata)
    runs = job_runs_table(settings.job_runs_table, metadata=metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        now = time.time()
        for n, age in enumerate((3 * 86_400.0, 86_400.0, 60.0)):
            await conn.execute(
                insert(inbox).values(
                    message_id=f"e{n}", source="/s", type="a.b.v1", processed_at=now - age
                )
            )
    jobs = messaging_jobs(settings, engine, outbox, inbox)
    assert [job.name for job in jobs] == [
        "outbox-cleanup:saasfw_messaging_outbox",
        "inbox-cleanup:saasfw_messaging_inbox",
    ]
    assert {job.every for job in jobs} == {settings.cleanup_interval}
    made = await JobScheduler(engine, runs, jobs).run_due()
    assert [(run.job, run.succeeded, run.result) for run in made] == [
        ("outbox-cleanup:saasfw_messaging_outbox", True, 0),
        ("inbox-cleanup:saasfw_messaging_inbox", True, 1),
    ]
    async with engine.connect() as conn:
        kept = (await conn.execute(select(func.count()).select_from(inbox))).scalar_one()
    assert kept == 2
    assert inbox_cleanup_job(engine, inbox, retention=10.0).every == 3600.0
