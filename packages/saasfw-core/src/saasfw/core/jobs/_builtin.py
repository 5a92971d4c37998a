"""The outbox's housekeeping as a job: stale leases and, if asked, idle key counters.

A relay deletes each message once delivered and releases a key's lease once the key is
drained, so what piles up is what a relay that died left behind (expired lease rows) and
one sequence counter per ordering key ever used. Counters are kept by default: a key whose
counter is forgotten starts again at sequence 1, which a consumer checking sequences must
accept. ``forget_keys_after`` opts in, for keys idle that long with nothing waiting.
"""

from __future__ import annotations

import time

from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from saasfw.core.jobs._scheduler import Job, JobContext
from saasfw.core.outbox._tables import OutboxTables

__all__ = ["cleanup_outbox", "outbox_cleanup_job"]


async def cleanup_outbox(
    tables: OutboxTables, engine: AsyncEngine, *, forget_keys_after: float | None = None
) -> int:
    """Delete expired leases of keys with nothing waiting (and idle counters); return the count."""
    m, keys, leases = tables.messages, tables.keys, tables.leases
    now = time.time()
    async with engine.begin() as conn:
        waiting_lease = select(m.c.id).where(m.c.ordering_key == leases.c.ordering_key).exists()
        removed = (
            await conn.execute(
                delete(leases).where(
                    and_(leases.c.lease_until < now, leases.c.retry_at < now, ~waiting_lease)
                )
            )
        ).rowcount
        if forget_keys_after is not None:
            waiting_key = select(m.c.id).where(m.c.ordering_key == keys.c.ordering_key).exists()
            removed += (
                await conn.execute(
                    delete(keys).where(
                        and_(keys.c.updated_at < now - forget_keys_after, ~waiting_key)
                    )
                )
            ).rowcount
    return int(removed)


def outbox_cleanup_job(
    tables: OutboxTables,
    engine: AsyncEngine,
    *,
    every: float = 3600.0,
    forget_keys_after: float | None = None,
    name: str | None = None,
) -> Job:
    """A :class:`Job` running :func:`cleanup_outbox` on ``tables`` once per ``every`` seconds."""
    if forget_keys_after is not None and forget_keys_after <= 0:
        raise ValueError("forget_keys_after must be positive seconds (or None to keep counters)")

    async def run(context: JobContext) -> int:
        return await cleanup_outbox(tables, engine, forget_keys_after=forget_keys_after)

    return Job(name or f"outbox-cleanup:{tables.messages.name}", every, run)
