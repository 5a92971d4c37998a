"""The SQL table is hash-chained per producer: ``verify_sql`` finds and locates tampering.

Two producers (two loggers, as two replicas) write to one table with no file sink, on
real PostgreSQL (a schema of its own) and on SQLite; rows are then altered or deleted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from saasfw.audit import Actor, AuditLogger, Resource, SqlSink
from saasfw.audit._sql import async_url
from saasfw.audit._tables import build_tables
from saasfw.audit._verify_sql import verify_sql

N = 40


@dataclass
class Db:
    url: str
    schema: str | None
    engine: AsyncEngine
    chain_key: bytes
    producers: tuple[str, str]


async def _fill(url: str, schema: str | None, chain_key: bytes) -> tuple[str, str]:
    producers = ("replica-a", "replica-b")
    loggers = [
        AuditLogger([SqlSink(url, schema=schema)], producer_id=p, chain_key=chain_key, batch_size=7)
        for p in producers
    ]
    for lg in loggers:
        await lg.__aenter__()
    for i in range(N):
        for lg in loggers:
            lg.record(
                "invoice.paid",
                outcome="success",
                actor=Actor("u1", tenant="t1"),
                resource=Resource("invoice", str(i)),
                details={"amount": i},
            )
    for lg in loggers:
        await lg.__aexit__(None, None, None)
    return producers


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    chain_key = os.urandom(32)
    if request.param == "sqlite":
        url, schema = f"sqlite:///{tmp_path / 'audit.db'}", None
        engine = create_async_engine(async_url(url))
        producers = await _fill(url, schema, chain_key)
        yield Db(url, schema, engine, chain_key, producers)
        await engine.dispose()
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"audit_vsql_{secrets.token_hex(6)}"
    engine = create_async_engine(async_url(url))
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        producers = await _fill(url, schema, chain_key)
        yield Db(url, schema, engine, chain_key, producers)
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


async def _row_id(db: Db, producer: str, seq: int) -> str:
    _, events, _ = build_tables(db.schema)
    query = select(events.c.id).where(events.c.producer == producer, events.c.seq == seq)
    async with db.engine.connect() as conn:
        return str((await conn.execute(query)).scalar_one())


async def _update(db: Db, producer: str, seq: int, **values: object) -> None:
    _, events, _ = build_tables(db.schema)
    where = (events.c.producer == producer, events.c.seq == seq)
    async with db.engine.begin() as conn:
        await conn.execute(update(events).where(*where).values(**values))


async def test_an_untouched_table_verifies_per_producer(db: Db) -> None:
    report = await verify_sql(db.engine, chain_key=db.chain_key, schema=db.schema)
    assert report.ok, report.findings
    assert report.records == 2 * N
    assert report.producers == dict.fromkeys(db.producers, (1, N))


async def test_a_rewritten_row_is_found_and_located(db: Db) -> None:
    a, b = db.producers
    _, events, _ = build_tables(db.schema)
    async with db.engine.connect() as conn:
        line = (
            await conn.execute(
                select(events.c.record).where(events.c.producer == a, events.c.seq == 17)
            )
        ).scalar_one()
    forged = line.replace('"amount":16', '"amount":9999')
    assert forged != line
    await _update(db, a, 17, record=forged, details=json.dumps({"amount": 9999}))
    report = await verify_sql(db.engine, chain_key=db.chain_key, schema=db.schema)
    row_id = await _row_id(db, a, 17)
    assert {(f.kind, f.producer, f.seq) for f in report.findings} == {("modified", a, 17)}
    assert all(row_id in (f.file or "") for f in report.findings)
    assert report.producers[b] == (1, N)  # the other producer's chain is untouched


async def test_a_column_changed_behind_the_chain_is_found(db: Db) -> None:
    a, _ = db.producers
    await _update(db, a, 5, outcome="denied")
    report = await verify_sql(db.engine, chain_key=db.chain_key, schema=db.schema)
    [finding] = report.findings
    assert (finding.kind, finding.producer, finding.seq) == ("modified", a, 5)
    assert "outcome" in finding.message


async def test_a_row_deleted_from_the_middle_is_found(db: Db) -> None:
    _, b = db.producers
    _, events, _ = build_tables(db.schema)
    async with db.engine.begin() as conn:
        await conn.execute(delete(events).where(events.c.producer == b, events.c.seq == 23))
    report = await verify_sql(db.engine, chain_key=db.chain_key, schema=db.schema)
    [finding] = report.findings
    assert (finding.kind, finding.producer, finding.seq) == ("deleted", b, 24)
    assert "seq 23..23 missing" in finding.message


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


async def test_the_console_script_verifies_the_table(db: Db, tmp_path: Path) -> None:
    key_file = tmp_path / "chain.key"
    key_file.write_text(base64.b64encode(db.chain_key).decode())
    exe = Path(sys.executable).with_name("saasfw-audit")
    args = [str(exe), "verify", "--sql", db.url, "--chain-key-file", str(key_file), "--json"]
    if db.schema:
        args += ["--sql-schema", db.schema]
    ok = await asyncio.to_thread(_run, args)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["records"] == 2 * N
    await _update(db, db.producers[0], 2, type="invoice.refunded")
    bad = await asyncio.to_thread(_run, args)
    assert bad.returncode == 1, bad.stderr
    [finding] = json.loads(bad.stdout)["findings"]
    assert (finding["kind"], finding["seq"]) == ("modified", 2)


async def test_a_stable_producer_id_resumes_its_chain_from_the_table(db: Db) -> None:
    a, _ = db.producers
    again = AuditLogger([SqlSink(db.url, schema=db.schema)], producer_id=a, chain_key=db.chain_key)
    async with again:
        assert again.last_sequence == N
        again.record("invoice.paid", details={"amount": -1})
    report = await verify_sql(db.engine, chain_key=db.chain_key, schema=db.schema)
    assert report.ok, report.findings
    assert report.producers[a] == (1, N + 1)
