"""The SQL sink against real PostgreSQL and SQLite, and the transactional outbox."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import column, func, select, table, text
from sqlalchemy.ext.asyncio import create_async_engine

from saasfw.audit import (
    Actor,
    AuditLogger,
    FileSink,
    Resource,
    SqlSink,
)
from saasfw.audit._sql import async_url
from saasfw.audit._tables import VERSION_TABLE, build_tables


@pytest.fixture
async def pg_schema(postgres_url: str) -> AsyncIterator[tuple[str, str]]:
    schema = f"audit_test_{secrets.token_hex(6)}"
    engine = create_async_engine(async_url(postgres_url))
    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield postgres_url, schema
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


@pytest.mark.postgres
async def test_sql_sink_stores_every_event_in_postgres_idempotently(
    pg_schema: tuple[str, str], tmp_path: Path
) -> None:
    url, schema = pg_schema
    _, events, _ = build_tables(schema)
    version_table = table(VERSION_TABLE, column("version_num"), schema=schema)
    sink = SqlSink(url, schema=schema)
    logger = AuditLogger(
        [FileSink(tmp_path / "a.jsonl"), sink],
        producer_id="pg",
        chain_key=b"c" * 32,
        batch_interval=0.01,
    )
    async with logger:
        for i in range(300):
            logger.record(
                "invoice.paid",
                resource=Resource("invoice", str(i)),
                actor=Actor("u1", tenant="t1", address="10.0.0.1"),
            )
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(events.c.seq, events.c.tenant, events.c.record).order_by(events.c.seq)
                )
            ).all()
            version: str = (
                await conn.execute(select(column("version_num")).select_from(version_table))
            ).scalar_one()
    finally:
        await engine.dispose()
    assert [r[0] for r in rows] == list(range(1, 301))
    assert {r[1] for r in rows} == {"t1"}
    assert version == "0001"
    file_lines = (tmp_path / "a.jsonl").read_text().splitlines()
    assert [r[2] for r in rows] == file_lines  # the same bytes, MAC included

    # A retried batch (at-least-once delivery) is not an error and adds no duplicate.
    from saasfw.audit import EncodedRecord

    again = SqlSink(url, schema=schema)
    again.open()
    try:
        again.write([EncodedRecord.from_line(line.encode()) for line in file_lines[:10]])
    finally:
        again.close()
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(events))).scalar_one()
    finally:
        await engine.dispose()
    assert count == 300
