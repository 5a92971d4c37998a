"""SIGTERM to a real consumer process on the real RabbitMQ: drained, restarted, applied once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from faststream.rabbit import RabbitBroker
from pydantic import BaseModel, SecretStr
from sqlalchemy import Column, Integer, MetaData, String, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from saasfw.messaging import CloudEvent, EventConsumer, EventSigner, EventVerifier, inbox_table
from saasfw.messaging.rabbit import RabbitDelivery, RabbitTopology, subscribe_rabbit

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]

SOURCE = "/services/orders"
KEY = "sigterm-key-" + "s" * 32

WORKER = """
import asyncio, json, os, signal
from pydantic import BaseModel, SecretStr
from faststream.rabbit import RabbitBroker
from sqlalchemy import Column, Integer, MetaData, String, Table, insert
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from saasfw.messaging import EventConsumer, EventVerifier, inbox_table
from saasfw.messaging.rabbit import RabbitTopology, subscribe_rabbit

metadata = MetaData()
inbox = inbox_table(metadata=metadata)
effects = Table("effects", metadata, Column("id", Integer, primary_key=True),
                Column("name", String(50)))
started = Table("started", metadata, Column("id", Integer, primary_key=True),
                Column("name", String(50)))

class Task(BaseModel):
    name: str

async def main():
    search_path = {"server_settings": {"search_path": os.environ["SCHEMA"]}}
    engine = create_async_engine(os.environ["DB_URL"], connect_args=search_path)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    consumer = EventConsumer(
        sessions, inbox, EventVerifier({os.environ["SOURCE"]: {"k1": SecretStr(os.environ["KEY"])}})
    )

    @consumer.handler("tasks.task.queued.v1", Task)
    async def on_task(received, session):
        async with engine.begin() as conn:  # visible at once, whatever happens next
            await conn.execute(insert(started).values(name=received.data.name))
        if received.data.name == "stuck" and received.attempt == 1:
            await asyncio.Event().wait()  # only the drain's cancel ends it
        await asyncio.sleep(2.0)
        await session.execute(insert(effects).values(name=received.data.name))

    broker = RabbitBroker(os.environ["BROKER_URL"], logger=None)
    topology = RabbitTopology(os.environ["EXCHANGE"], os.environ["QUEUE"])
    subscription = subscribe_rabbit(broker, consumer, topology, ordered=False, prefetch=10)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await broker.start()
    await stop.wait()
    report = await subscription.drain(budget=15.0)
    await broker.stop()
    await engine.dispose()
    print(json.dumps({"finished": report.finished, "returned": report.returned,
                      "processed": consumer.stats.processed,
                      "duplicates": consumer.stats.duplicates}), flush=True)

asyncio.run(main())
"""


class Task(BaseModel):
    name: str


async def _count(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_sigterm_drains_in_flight_and_a_restart_applies_the_rest_once(
    rabbitmq_url: str, postgres_url: str, pg_engine: AsyncEngine, tmp_path: Path, tools: Any
) -> None:
    metadata = MetaData()
    inbox_table(metadata=metadata)
    effects = Table(
        "effects", metadata, Column("id", Integer, primary_key=True), Column("name", String(50))
    )
    started = Table(
        "started", metadata, Column("id", Integer, primary_key=True), Column("name", String(50))
    )
    async with pg_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        schema = (await conn.execute(text("SELECT current_schema()"))).scalar_one()
    suffix = uuid.uuid4().hex[:10]
    topology = RabbitTopology(f"saasfw-term-{suffix}", f"saasfw-term-{suffix}")
    (tmp_path / "worker.py").write_text(WORKER)
    env = {
        **os.environ,
        "DB_URL": postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1),
        "SCHEMA": schema,
        "SOURCE": SOURCE,
        "KEY": KEY,
        "BROKER_URL": rabbitmq_url,
        "EXCHANGE": topology.exchange,
        "QUEUE": topology.queue,
    }

    async def start_worker() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            str(tmp_path / "worker.py"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def terminate(worker: asyncio.subprocess.Process) -> dict[str, int]:
        worker.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(worker.communicate(), 60)
        assert worker.returncode == 0, err.decode()
        return dict(json.loads(out.decode().strip().splitlines()[-1]))

    broker = RabbitBroker(rabbitmq_url, logger=None)
    await broker.connect()
    # The queue and its bindings exist before anything is published (a declaring consumer).

    declarer = EventConsumer(None, None, EventVerifier({}))  # type: ignore[arg-type]
    declarer.add_handler("tasks.task.queued.v1", Task, _never)

    await subscribe_rabbit(broker, declarer, topology, ordered=False, prefetch=10).declare()
    signer = EventSigner(SOURCE, "k1", SecretStr(KEY))
    names = ["stuck", *(f"task-{n}" for n in range(5))]
    deliver = RabbitDelivery(broker, topology.exchange)
    for index, name in enumerate(names):
        event = signer.sign(
            CloudEvent.create(
                "tasks.task.queued.v1", Task(name=name), partitionkey=name, sequence=index + 1
            )
        )
        await deliver(tools.as_outbox_message(event))
    await broker.stop()

    first = await start_worker()
    await tools.wait_for(
        lambda: _at_least(pg_engine, started, len(names)), "every handler to start", 60
    )
    assert await _count(pg_engine, effects) == 0  # all six are in flight at SIGTERM
    report = await terminate(first)
    assert report == {"finished": 5, "returned": 1, "processed": 5, "duplicates": 0}
    assert await _count(pg_engine, effects) == 5

    second = await start_worker()
    await tools.wait_for(
        lambda: _at_least(pg_engine, effects, len(names)), "the returned one to be applied", 60
    )
    await asyncio.sleep(1.0)  # a late duplicate would show up here
    report = await terminate(second)
    assert report["processed"] == 1
    assert report["duplicates"] == 0
    async with pg_engine.connect() as conn:
        done = sorted((await conn.execute(select(effects.c.name))).scalars())
    assert done == sorted(names)


async def _at_least(engine: AsyncEngine, table: Table, count: int) -> bool:
    return await _count(engine, table) >= count


async def _never(received: Any, session: Any) -> None:
    raise AssertionError("the declaring consumer never consumes")
