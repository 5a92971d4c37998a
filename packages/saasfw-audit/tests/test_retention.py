"""Retention: purges honour legal holds, are audited, and leave a log that verifies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from saasfw.audit import (
    Actor,
    AuditLogger,
    CheckpointWriter,
    FileSink,
    LegalHold,
    Resource,
    SqlSink,
    purge_file_log,
    purge_sql,
    verify_log,
)
from saasfw.audit._file import log_segments
from saasfw.audit._tables import build_tables


def test_purge_keeps_held_segments_is_audited_and_the_log_still_verifies(
    tmp_path: Path, chain_key: bytes, signing_key: Ed25519PrivateKey
) -> None:
    log = tmp_path / "audit.jsonl"
    cps = tmp_path / "cp.jsonl"
    writer = CheckpointWriter(cps, signing_key, every_records=100)
    logger = AuditLogger(
        [FileSink(log, max_bytes=15_000, checkpoints=writer)],
        producer_id="ret",
        chain_key=chain_key,
        batch_size=40,
        batch_interval=0.005,
    )
    logger.start()
    for i in range(600):
        logger.record("doc.read", resource=Resource("doc", str(i)))
    assert logger.flush()
    before = log_segments(log)
    assert len(before) > 6
    # The record "doc 250" is under a legal hold: its segment and all later ones stay.
    held_seg = next(s for s in before if b'"id":"250"' in s.read_bytes())
    report = purge_file_log(
        log,
        before=datetime.now(UTC) + timedelta(seconds=1),
        checkpoints=writer,
        holds=[LegalHold("case-17", resource_type="doc", resource_id="250")],
        logger=logger,
    )
    assert logger.close().complete
    after = log_segments(log)
    assert held_seg in after
    assert report.held_segments == [held_seg.name]
    assert report.removed_segments == [s.name for s in before[: before.index(held_seg)]]
    assert report.removed_records > 0
    first = json.loads(after[0].read_bytes().splitlines()[0])
    assert report.anchors == {"ret": first["seq"] - 1}
    purge = [
        json.loads(x)
        for x in log.read_text().splitlines()
        if json.loads(x)["type"] == "audit.retention.purged"
    ]
    assert len(purge) == 1
    assert purge[0]["details"]["holds"] == ["case-17"]
    ok = verify_log(
        log, chain_key=chain_key, public_key=signing_key.public_key(), checkpoints_path=cps
    )
    assert ok.ok, ok.findings
    # Without the signed anchor, the missing head is reported.
    no_anchor = verify_log(log, chain_key=chain_key)
    assert [f.kind for f in no_anchor.findings] == ["deleted"]
    assert "from the start" in no_anchor.findings[0].message


async def test_sql_purge_honours_holds(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    logger = AuditLogger([SqlSink(url)], producer_id="p", batch_interval=0.005)
    async with logger:
        for i in range(50):
            logger.record("x.y", actor=Actor("u", tenant="held" if i % 5 == 0 else "t"))
        assert logger.flush()
        engine = create_async_engine(url)
        try:
            removed = await purge_sql(
                engine,
                before=datetime.now(UTC) + timedelta(seconds=1),
                holds=[LegalHold("lit-1", tenant="held")],
                logger=logger,
            )
            assert removed == 40
            assert logger.flush()
            _, t, _ = build_tables()
            async with engine.connect() as conn:
                tenants = (
                    await conn.execute(select(t.c.tenant, func.count()).group_by(t.c.tenant))
                ).all()
        finally:
            await engine.dispose()
    counts: dict[str | None, int] = {row[0]: row[1] for row in tenants}
    assert counts["held"] == 10
    assert "t" not in counts
    assert counts[None] == 1  # the purge's own event


async def test_retention_jobs_purge_the_shared_table_and_each_replicas_file_log(
    tmp_path: Path, chain_key: bytes, signing_key: Ed25519PrivateKey
) -> None:
    import time

    from saasfw.audit import retention_jobs
    from saasfw.core.jobs import JobContext

    url = f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"
    now = time.time_ns()
    clock = [now - 3 * 86_400 * 10**9]  # three days ago, then now
    writer = CheckpointWriter(tmp_path / "cp.jsonl", signing_key, every_records=50)
    logger = AuditLogger(
        [SqlSink(url), FileSink(tmp_path / "audit.jsonl", max_bytes=4_000, checkpoints=writer)],
        producer_id="replica-a",
        chain_key=chain_key,
        batch_size=10,
        batch_interval=0.005,
        clock=lambda: clock[0],
    )
    jobs = retention_jobs(logger, keep_days=1, every=3600)
    assert sorted(job.name for job in jobs) == [
        "audit-retention:file:replica-a",
        "audit-retention:sql",
    ]
    async with logger:
        for i in range(60):
            logger.record("doc.read", resource=Resource("doc", str(i)))
        assert logger.flush()
        clock[0] = now
        for i in range(5):
            logger.record("doc.read", resource=Resource("doc", f"new-{i}"))
        assert logger.flush()
        context = JobContext("test", 1, time.time(), "runner")
        removed = {job.name: await job.run(context) for job in jobs}
        assert logger.flush()
    assert removed["audit-retention:sql"] == 60  # the old ones, not the 5 new
    assert isinstance(removed["audit-retention:file:replica-a"], int)
    assert removed["audit-retention:file:replica-a"] > 0  # old rotated segments went
    engine = create_async_engine(url)
    try:
        _, t, _ = build_tables()
        async with engine.connect() as conn:
            kept = list((await conn.execute(select(t.c.type, t.c.resource_id))).all())
    finally:
        await engine.dispose()
    assert sorted(r for ty, r in kept if ty == "doc.read") == [f"new-{i}" for i in range(5)]
    assert sum(1 for ty, _ in kept if ty == "audit.retention.purged") == 2  # one per sink
    report = verify_log(
        tmp_path / "audit.jsonl",
        chain_key=chain_key,
        public_key=signing_key.public_key(),
        checkpoints_path=tmp_path / "cp.jsonl",
    )
    assert report.ok, report.findings
