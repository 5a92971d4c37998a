"""AuditOutbox on saasfw-core's outbox, against real SQLite and PostgreSQL.

Staged in the caller's transaction (rollback: neither row nor event), encrypted when
staged, relayed once per committed event with the same id, redeliveries dropped by the
pipeline and the SQL sink, and bounded (refused with AuditUnavailableError, never dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from saasfw.audit import (
    AuditDeliveryError,
    AuditLogger,
    AuditOutbox,
    AuditUnavailableError,
    Delivery,
    FieldCipher,
    FileSink,
    Resource,
    SqlSink,
    verify_log,
)
from saasfw.audit._sql import async_url
from saasfw.core.outbox import OutboxMessage

Backend = tuple[str, AsyncEngine, str | None]  # sink URL, engine, schema


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
        engine = create_async_engine(async_url(url))
        yield url, engine, None
        await engine.dispose()
        return
    url = request.getfixturevalue("postgres_url")
    schema = f"audit_outbox_{secrets.token_hex(6)}"
    admin = create_async_engine(async_url(url))
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_async_engine(
        async_url(url), connect_args={"server_settings": {"search_path": schema}}
    )
    try:
        yield url, engine, schema
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


metadata = MetaData()
orders = Table("orders", metadata, Column("id", Integer, primary_key=True), Column("email", String))


async def _setup(
    backend: Backend, tmp_path: Path, cipher: FieldCipher, chain_key: bytes
) -> tuple[AuditLogger, AuditOutbox]:
    url, engine, schema = backend
    logger = AuditLogger(
        [FileSink(tmp_path / "log" / "audit.jsonl"), SqlSink(url, schema=schema)],
        producer_id=f"p-{secrets.token_hex(3)}",
        chain_key=chain_key,
        cipher=cipher,
        encrypted_fields=["email"],
        batch_interval=0.01,
    )
    outbox = AuditOutbox(logger, metadata=MetaData())
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(outbox.tables.messages.metadata.create_all)
    return logger, outbox


def _records(tmp_path: Path) -> list[dict[str, object]]:
    path = tmp_path / "log" / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


async def _count(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _sql_ids(backend: Backend) -> list[str]:
    url, _, schema = backend
    engine = create_async_engine(async_url(url))
    events = Table("audit_events", MetaData(schema=schema), Column("id", String))
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(select(events.c.id))).scalars())
    finally:
        await engine.dispose()


async def _delete_sql_event(backend: Backend, event_id: str) -> None:
    url, _, schema = backend
    engine = create_async_engine(async_url(url))
    events = Table("audit_events", MetaData(schema=schema), Column("id", String))
    try:
        async with engine.begin() as conn:
            await conn.execute(events.delete().where(events.c.id == event_id))
    finally:
        await engine.dispose()


async def _until(condition: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + 60.0
    while not await condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def _place(outbox: AuditOutbox, engine: AsyncEngine, order_id: int, fail: bool) -> str:
    async with engine.begin() as conn:
        await conn.execute(orders.insert().values(id=order_id, email=f"c{order_id}@example.com"))
        eid = await outbox.stage(
            conn,
            "orders.order.created",
            resource=Resource("order", str(order_id)),
            details={"email": f"c{order_id}@example.com", "n": order_id},
        )
        if fail:
            raise RuntimeError("the business change failed after staging")
    return eid


async def test_rollback_leaves_nothing_and_commit_is_delivered_once(
    backend: Backend, tmp_path: Path, cipher: FieldCipher, chain_key: bytes
) -> None:
    _, engine, _ = backend
    logger, outbox = await _setup(backend, tmp_path, cipher, chain_key)
    committed: dict[str, int] = {}
    async with logger:
        for i in range(1, 21):
            with contextlib.suppress(RuntimeError):
                committed[await _place(outbox, engine, i, fail=i % 4 == 0)] = i
        assert await _count(engine, orders) == 15
        assert await _count(engine, outbox.tables.messages) == 15
        # Encrypted at staging: the outbox row never holds the e-mail in clear.
        async with engine.connect() as conn:
            payloads = list(
                (await conn.execute(select(outbox.tables.messages.c.payload))).scalars()
            )
        assert not any("@example.com" in p for p in payloads)
        async with outbox.relay(engine, poll_interval=0.05):
            await _until(lambda: _count_is(engine, outbox, 0))
    records = _records(tmp_path)
    assert sorted(str(r["id"]) for r in records) == sorted(committed)
    assert sorted(await _sql_ids(backend)) == sorted(committed)
    for record in records:
        details = record["details"]
        assert isinstance(details, dict)
        assert str(details["email"]).startswith("enc:1:")
        decrypted = cipher.decrypt_details(record)
        order_id = committed[str(record["id"])]
        assert decrypted["email"] == f"c{order_id}@example.com"
    # In order per producer: the delivery order is the commit order here.
    assert [r["id"] for r in records] == list(committed)
    assert verify_log(tmp_path / "log" / "audit.jsonl", chain_key=chain_key).ok


async def _count_is(engine: AsyncEngine, outbox: AuditOutbox, n: int) -> bool:
    return await _count(engine, outbox.tables.messages) == n


async def test_redelivery_after_a_crash_between_sink_write_and_delete_is_recorded_once(
    backend: Backend, tmp_path: Path, cipher: FieldCipher, chain_key: bytes
) -> None:
    _, engine, _ = backend
    logger, outbox = await _setup(backend, tmp_path, cipher, chain_key)
    crashes = 0

    async def crashing_deliver(message: OutboxMessage) -> None:
        # The event reaches every sink; then the relay dies before deleting the row.
        nonlocal crashes
        await outbox.deliver(message)
        if message.attempts == 0:
            crashes += 1
            raise ConnectionError("relay died between the sink write and the outbox delete")

    ids = []
    async with logger:
        for i in range(1, 6):
            ids.append(await _place(outbox, engine, i, fail=False))
        from saasfw.core.outbox import OutboxRelay

        relay = OutboxRelay(outbox.tables, engine, crashing_deliver, max_backoff=0.3)
        for _ in range(50):
            await relay.run_once()
            if await _count_is(engine, outbox, 0):
                break
            await asyncio.sleep(0.3)
        assert await _count_is(engine, outbox, 0)
    assert crashes >= 1
    assert logger.relayed_duplicates == crashes
    # A new process: the first delivery landed, the row survived the crash. The pipeline
    # recognises the id from the file log's tail and resends the file's line to the SQL
    # sink only (which ignores it by primary key when it has it).
    async with engine.begin() as conn:
        await conn.execute(orders.insert().values(id=99, email="z@example.com"))
        again = await outbox.stage(conn, "orders.order.created", details={"n": 99})
    async with engine.begin() as conn:
        m = outbox.tables.messages
        await conn.execute(m.update().where(m.c.message_id == again).values(message_id=ids[2]))
    # ...and the process died after the file stored the event, before the SQL sink did.
    await _delete_sql_event(backend, ids[2])
    assert sorted(await _sql_ids(backend)) == sorted(set(ids) - {ids[2]})
    restarted = AuditLogger(
        [FileSink(tmp_path / "log" / "audit.jsonl"), SqlSink(backend[0], schema=backend[2])],
        producer_id="restarted",
        chain_key=chain_key,
        cipher=cipher,
        encrypted_fields=["email"],
        batch_interval=0.01,
    )
    outbox2 = AuditOutbox(restarted, metadata=MetaData())
    async with restarted, outbox2.relay(engine, poll_interval=0.05):
        await _until(lambda: _count_is(engine, outbox2, 0))
    assert restarted.relayed_duplicates == 1
    records = _records(tmp_path)
    assert [r["id"] for r in records] == ids
    assert sorted(await _sql_ids(backend)) == sorted(ids)
    assert verify_log(tmp_path / "log" / "audit.jsonl", chain_key=chain_key).ok


async def test_a_full_outbox_refuses_staging_and_drops_nothing(
    backend: Backend, tmp_path: Path, cipher: FieldCipher, chain_key: bytes
) -> None:
    _, engine, _ = backend
    logger, outbox = await _setup(backend, tmp_path, cipher, chain_key)
    outbox.max_depth = 3
    outbox._stats_interval = 0.0
    async with logger:
        for i in range(1, 4):
            await _place(outbox, engine, i, fail=False)
        with pytest.raises(AuditUnavailableError) as refused:
            await _place(outbox, engine, 4, fail=False)
        assert refused.value.retry_after >= 1
        assert "3 audit events wait undelivered" in str(refused.value)
        assert await _count(engine, orders) == 3  # the refused change rolled back
        # Age bound: old undelivered events refuse too, until the relay caught up.
        outbox.max_depth, outbox.max_age = 100, 0.01
        await asyncio.sleep(0.05)
        with pytest.raises(AuditUnavailableError, match="oldest undelivered"):
            await _place(outbox, engine, 5, fail=False)
        async with outbox.relay(engine, poll_interval=0.05):
            await _until(lambda: _count_is(engine, outbox, 0))
        await _place(outbox, engine, 6, fail=False)
    assert len(_records(tmp_path)) == 3
    assert outbox.refused == 2


class _FullDisk(FileSink):
    """A real FileSink whose disk is full while ``full`` is set (the write raises ENOSPC
    before any byte lands, as the kernel does once no block is left)."""

    full = True

    def write(self, batch: object) -> None:  # type: ignore[override]
        if self.full:
            import errno

            from saasfw.audit import AuditSinkError

            raise AuditSinkError(f"write failed: {os.strerror(errno.ENOSPC)}", where="test")
        super().write(batch)  # type: ignore[arg-type]


async def test_a_redelivery_is_not_acknowledged_before_its_first_delivery_is_stored(
    tmp_path: Path, cipher: FieldCipher, chain_key: bytes
) -> None:
    # The relay timed out waiting for an event stuck behind a full disk and delivered it
    # again: the pipeline drops the copy (one line per event), but must not acknowledge
    # it until the first one is stored, or the relay deletes the row of an event that
    # only memory holds, and a crash then loses it.
    url = f"sqlite:///{tmp_path / 'app.db'}"
    engine = create_async_engine(async_url(url))
    sink = _FullDisk(tmp_path / "log" / "audit.jsonl")
    logger = AuditLogger(
        [Delivery(sink, policy="fail_closed", retry_max=0.2)],
        producer_id="p-disk",
        chain_key=chain_key,
        cipher=cipher,
        encrypted_fields=["email"],
        batch_interval=0.01,
        durable_timeout=0.5,
    )
    outbox = AuditOutbox(logger, metadata=MetaData())
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.run_sync(outbox.tables.messages.metadata.create_all)
    try:
        async with logger:
            eid = await _place(outbox, engine, 1, fail=False)
            async with engine.connect() as conn:
                row = (await conn.execute(select(outbox.tables.messages))).mappings().one()
            message = OutboxMessage(
                message_id=row["message_id"],
                ordering_key=row["ordering_key"],
                sequence=int(row["sequence"]),
                type=row["type"],
                payload=row["payload"],
                headers={},
                created_at=float(row["created_at"]),
                attempts=0,
            )
            for _ in range(2):  # the first delivery, then the relay's retry
                with pytest.raises(AuditDeliveryError):
                    await outbox.deliver(message)
            assert logger.relayed_duplicates == 1
            sink.full = False  # space returns: the channel's retry stores the first copy
            deadline = time.monotonic() + 60
            while True:  # the relay retries until a delivery is acknowledged
                try:
                    await outbox.deliver(message)
                    break
                except AuditDeliveryError:
                    assert time.monotonic() < deadline, "never acknowledged"
    finally:
        await engine.dispose()
    records = _records(tmp_path)
    assert [r["id"] for r in records] == [eid]
    assert verify_log(tmp_path / "log" / "audit.jsonl", chain_key=chain_key).ok
