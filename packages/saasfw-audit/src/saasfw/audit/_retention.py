"""Retention: purge old audit data, honour legal holds, audit the purge, re-anchor the chain.

``retention_jobs`` schedules the purges on saasfw.core's job scheduler.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saasfw.audit._chain import CheckpointWriter
from saasfw.audit._file import _fsync_dir, log_segments

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from saasfw.audit._logger import AuditLogger
    from saasfw.core.jobs import Job

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True, slots=True)
class LegalHold:
    """Records matching every set field are kept whatever their age.

    Args:
        id: names the hold in the purge's own audit event.
        tenant, actor_id, resource_type, resource_id: match the record's fields.
        since, until: the hold covers records in this time range (either may be open).
    """

    id: str
    tenant: str | None = None
    actor_id: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, record: Mapping[str, Any]) -> bool:
        actor = record.get("actor") or {}
        resource = record.get("resource") or {}
        ts = datetime.strptime(record["ts"], _TS_FORMAT).replace(tzinfo=UTC)
        return (
            (self.tenant is None or actor.get("tenant") == self.tenant)
            and (self.actor_id is None or actor.get("id") == self.actor_id)
            and (self.resource_type is None or resource.get("type") == self.resource_type)
            and (self.resource_id is None or resource.get("id") == self.resource_id)
            and (self.since is None or ts >= _aware(self.since))
            and (self.until is None or ts < _aware(self.until))
        )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge removed and what it kept because of legal holds."""

    removed_records: int
    removed_segments: list[str] = field(default_factory=list)
    held_segments: list[str] = field(default_factory=list)
    anchors: dict[str, int] = field(default_factory=dict)


def purge_file_log(
    path: str | os.PathLike[str],
    *,
    before: datetime,
    checkpoints: CheckpointWriter,
    holds: Sequence[LegalHold] = (),
    logger: AuditLogger | None = None,
) -> PurgeReport:
    """Delete rotated segments whose records are all older than ``before``.

    Only a leading run of segments goes (never the active file), so what remains is a
    contiguous suffix of each producer's chain. A segment with any record under a legal hold
    stops the run. Before deleting, the last purged link of each producer is signed as an
    anchor in ``checkpoints``, so ``verify`` still passes; then the purge is recorded through
    ``logger`` (without personal data).
    """
    cutoff = _aware(before)
    segments = log_segments(path)[:-1]
    purge: list[Path] = []
    held: list[str] = []
    last_links: dict[str, tuple[int, str]] = {}
    removed = 0
    for seg in segments:
        links: dict[str, tuple[int, str]] = {}
        count = 0
        old = True
        hold_hit: list[str] = []
        with seg.open("rb") as fh:
            for raw in fh:
                rec = json.loads(raw)
                count += 1
                ts = datetime.strptime(rec["ts"], _TS_FORMAT).replace(tzinfo=UTC)
                if ts >= cutoff:
                    old = False
                    break
                hold_hit.extend(h.id for h in holds if h.matches(rec))
                if "mac" in rec:
                    links[rec["producer"]] = (int(rec["seq"]), rec["mac"])
        if not old:
            break
        if hold_hit:
            held.append(seg.name)
            break
        purge.append(seg)
        last_links.update(links)
        removed += count
    for producer, (seq, mac_hex) in last_links.items():
        checkpoints.write_anchor(producer, seq, mac_hex, note="retention")
    for seg in purge:
        seg.unlink()
    if purge:
        _fsync_dir(purge[0].parent)
    report = PurgeReport(
        removed, [p.name for p in purge], held, {p: s for p, (s, _) in last_links.items()}
    )
    if logger is not None:
        logger.record(
            "audit.retention.purged",
            action="purge",
            details={
                "sink": "file",
                "before": cutoff.isoformat(),
                "removed_records": removed,
                "removed_segments": report.removed_segments,
                "held_segments": held,
                "holds": [h.id for h in holds],
                "anchored_at": report.anchors,
            },
        )
    return report


async def purge_sql(
    engine: AsyncEngine,
    *,
    before: datetime,
    holds: Sequence[LegalHold] = (),
    schema: str | None = None,
    logger: AuditLogger | None = None,
) -> int:
    """Delete ``audit_events`` rows older than ``before`` that no legal hold covers.

    The rows keep their MACs; the file log remains the integrity anchor. Returns the number
    of rows removed; the purge is recorded through ``logger``.
    """
    from sqlalchemy import and_, delete, not_

    from saasfw.audit._tables import build_tables

    _, t, _ = build_tables(schema)
    cutoff = _aware(before)
    conds: list[Any] = [t.c.ts < cutoff]
    for h in holds:
        parts: list[Any] = []
        for col, value in (
            (t.c.tenant, h.tenant),
            (t.c.actor_id, h.actor_id),
            (t.c.resource_type, h.resource_type),
            (t.c.resource_id, h.resource_id),
        ):
            if value is not None:
                parts.append(col == value)
        if h.since is not None:
            parts.append(t.c.ts >= _aware(h.since))
        if h.until is not None:
            parts.append(t.c.ts < _aware(h.until))
        conds.append(not_(and_(*parts)) if parts else t.c.id.is_(None))
    async with engine.begin() as conn:
        result = await conn.execute(delete(t).where(*conds))
    removed = int(result.rowcount or 0)
    if logger is not None:
        await logger.arecord(
            "audit.retention.purged",
            action="purge",
            details={
                "sink": "sql",
                "before": cutoff.isoformat(),
                "removed_records": removed,
                "holds": [h.id for h in holds],
            },
        )
    return removed


def retention_jobs(
    logger: AuditLogger,
    *,
    keep_days: float,
    every: float = 86_400.0,
    holds: Sequence[LegalHold] = (),
) -> list[Job]:
    """The scheduled purges of ``logger``'s sinks, for ``saasfw.core.jobs.JobScheduler``.

    - The SQL sink's table is shared by the fleet: one job, ``audit-retention:sql``, which
      the scheduler runs once per period across every replica.
    - A file log (with signed checkpoints, which the purge re-anchors) belongs to its
      replica: one job per producer, ``audit-retention:file:<producer>``, so each replica
      purges its own rotated segments.

    Each purge is recorded through ``logger`` (``audit.retention.purged``); the jobs return
    the number of records removed.
    """
    import asyncio
    from datetime import timedelta

    from saasfw.audit._file import FileSink
    from saasfw.audit._sql import SqlSink
    from saasfw.core.jobs import Job, JobContext

    if not keep_days > 0:
        raise ValueError(f"keep_days must be positive, got {keep_days}")
    keep = timedelta(days=keep_days)
    jobs: list[Job] = []
    for sink in logger.sinks:
        if isinstance(sink, SqlSink):

            async def purge_table(context: JobContext, sink: SqlSink = sink) -> int:
                from sqlalchemy.ext.asyncio import create_async_engine

                engine = create_async_engine(sink.url)
                try:
                    before = datetime.fromtimestamp(context.period_start, UTC) - keep
                    return await purge_sql(
                        engine, before=before, holds=holds, schema=sink.schema, logger=logger
                    )
                finally:
                    await engine.dispose()

            jobs.append(Job("audit-retention:sql", every, purge_table))
        elif isinstance(sink, FileSink) and sink.checkpoints is not None:

            async def purge_file(context: JobContext, sink: FileSink = sink) -> int:
                before = datetime.fromtimestamp(context.period_start, UTC) - keep
                checkpoints = sink.checkpoints
                if checkpoints is None:  # an internal invariant, not an input check
                    raise RuntimeError("saasfw.audit: the file sink lost its checkpoints")
                report = await asyncio.to_thread(
                    purge_file_log,
                    sink.path,
                    before=before,
                    checkpoints=checkpoints,
                    holds=holds,
                    logger=logger,
                )
                return report.removed_records

            jobs.append(Job(f"audit-retention:file:{logger.producer_id}"[:100], every, purge_file))
    return jobs
