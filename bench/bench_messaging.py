"""saasfw-messaging's two figures (issue 19, deliver 8), both through ``create_app``.

1. **Publishing within a request.** One app, two routes: ``POST /plain`` inserts a row,
   ``POST /evented`` inserts the same row and publishes an event through the outbox in the
   same unit of work. Interleaved rounds over ASGI (no sockets); the ratio is of medians
   per request, wall-clock and this process's CPU time. The relay runs meanwhile (its
   deliveries go to the in-process bus), as it does in production.
2. **End to end.** Events staged in the outbox are relayed to the broker and consumed by a
   handler that writes to the inbox and a projection table, each event once; the figure
   is events per second from the relay's start to the last handler commit.

    uv run python bench/bench_messaging.py                       # SQLite, memory bus
    uv run python bench/bench_messaging.py --broker rabbit        # + RabbitMQ end to end
    uv run python bench/bench_messaging.py --broker nats --postgres postgresql://...
    uv run python bench/bench_messaging.py --smoke                # a few seconds, for CI
    uv run python bench/bench_messaging.py --relay-only --postgres postgresql://...

The figures are printed, not asserted: timings on a shared machine are noisy.

Figures of 2026-12-07 (2 cores shared with eight other builds, load average ~10, so
indicative only; 7 interleaved rounds of 200 requests, then 2,000 events staged with the
relay stopped):

    publish within a request   PostgreSQL + RabbitMQ: plain 6.9-14.6 ms, evented 23-51 ms
                               (wall 3.0-4.9x, CPU 4.9-7.0x over several runs);
                               PostgreSQL + NATS 4.1x; SQLite + memory bus 1.5-2.3x
    end to end                 RabbitMQ: 2,000 events in 44.7 s, 45 events/s; after the
                               relay's round rework, 24.0 s, 83 events/s (plain 7.8 ms,
                               evented 27.1 ms, wall 3.5x, in that run)

What bounds them, measured apart (``--relay-only``: core's ``OutboxRelay`` on PostgreSQL,
delivery a no-op, 2,000 events): with every event on its own ordering key, 1,600-1,800
events/s (63 events/s before a round's keys were claimed, read and settled together, in the
same run); with all on one key, 4,400-7,300 events/s. End to end on RabbitMQ the figure
went from 45 to 83 events/s (2,000 events in 24 s, 2026-12-07, same machine): the consumer
now bounds it: each event is a transaction with its inbox row, and the handlers' concurrency
per replica is bounded. Staging adds a key-counter upsert, a
message insert and an HMAC signature to the request's transaction. Issue 19 keeps these
figures open for work.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Depends
from pydantic import BaseModel, SecretStr
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from saasfw.app import (
    ComponentSwitches,
    DbSession,
    EventHandlers,
    EventPublisher,
    ServiceSettings,
    create_app,
    database,
    messaging,
    singletons_of,
)
from saasfw.db import DbSettings
from saasfw.messaging import CloudEvent, MessagingSettings, Received
from saasfw.security import public

metadata = MetaData()
rows = Table("bench_rows", metadata, Column("id", String(40), primary_key=True))
seen = Table(
    "bench_seen",
    metadata,
    Column("n", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False),
)


class RowMade(BaseModel):
    id: str


def _settings(tmp: Path, kind: str, postgres: str | None) -> ServiceSettings:
    urls = {
        "memory": "memory://local",
        "rabbit": os.environ.get("SAASFW_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        "nats": os.environ.get("SAASFW_TEST_NATS_URL", "nats://127.0.0.1:4222"),
    }
    db = DbSettings(url=postgres, schema_name=f"bench_{uuid.uuid4().hex[:8]}") if postgres else None
    return ServiceSettings(
        service="bench-messaging",
        env="test",
        data_dir=tmp,
        db=db or DbSettings(),
        components=ComponentSwitches(
            observability=False, audit=False, authentication=False, messaging=True
        ),
        messaging=MessagingSettings(
            kind=kind,  # type: ignore[arg-type]
            broker_url=SecretStr(urls[kind]),
            destination=f"bench.{uuid.uuid4().hex[:8]}",
        ),
    )


def _app(settings: ServiceSettings, handlers: EventHandlers) -> Any:
    router = APIRouter(dependencies=[Depends(public)])

    @router.post("/plain", status_code=201)
    async def plain(session: DbSession) -> dict[str, str]:
        key = uuid.uuid4().hex
        await session.execute(insert(rows).values(id=key))
        return {"id": key}

    @router.post("/evented", status_code=201)
    async def evented(session: DbSession, events: EventPublisher) -> dict[str, str]:
        key = uuid.uuid4().hex
        await session.execute(insert(rows).values(id=key))
        await events.publish(
            session, CloudEvent.create("bench.row.made.v1", RowMade(id=key)), key=key
        )
        return {"id": key}

    return create_app(settings, routers=[router], events=[handlers])


async def _per_request(client: httpx.AsyncClient, path: str, count: int) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        response = await client.post(path)
        assert response.status_code == 201, response.text
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


async def _count(app: Any) -> int:
    engine = singletons_of(app).get(database).engine
    async with engine.connect() as conn:
        return len((await conn.execute(select(seen.c.n))).all())


async def _wait_for(app: Any, target: int, seconds: float = 300.0) -> int:
    """Poll the projection until ``target`` events were handled (or time runs out)."""
    deadline = time.monotonic() + seconds
    while (done := await _count(app)) < target and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return done


async def run(kind: str, postgres: str | None, rounds: int, per_round: int, events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp), kind, postgres)
        handlers = EventHandlers(f"bench-{uuid.uuid4().hex[:8]}", ordered=False)

        @handlers.handler("bench.row.made.v1", RowMade)
        async def on_made(received: Received[RowMade], session: AsyncSession) -> None:
            await session.execute(insert(seen).values(id=received.data.id))

        app = _app(settings, handlers)
        if postgres is None:
            from sqlalchemy import create_engine

            (Path(tmp) / "bench_messaging").mkdir(exist_ok=True)
            sync = create_engine(
                f"sqlite:///{Path(tmp) / 'bench_messaging' / 'bench_messaging.db'}"
            )
            metadata.create_all(sync)
            sync.dispose()
        async with app.router.lifespan_context(app):
            if postgres is not None:
                engine = singletons_of(app).get(database).engine
                async with engine.begin() as conn:
                    await conn.run_sync(metadata.create_all)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                await _per_request(client, "/plain", per_round)  # warm up both routes
                await _per_request(client, "/evented", per_round)
                samples: dict[str, list[float]] = {
                    "plain": [],
                    "evented": [],
                    "plain_cpu": [],
                    "evented_cpu": [],
                }
                for r in range(rounds):
                    order = ["plain", "evented"] if r % 2 == 0 else ["evented", "plain"]
                    for name in order:
                        wall, cpu = await _per_request(client, f"/{name}", per_round)
                        samples[name].append(wall)
                        samples[f"{name}_cpu"].append(cpu)
                medians = {k: statistics.median(v) for k, v in samples.items()}
                print(
                    f"publish within a request ({kind}, {'postgres' if postgres else 'sqlite'}): "
                    f"plain {medians['plain'] * 1e3:.2f} ms, "
                    f"evented {medians['evented'] * 1e3:.2f} ms, "
                    f"ratio wall {medians['evented'] / medians['plain']:.2f}, "
                    f"cpu {medians['evented_cpu'] / medians['plain_cpu']:.2f}"
                )
                # End to end: with the relay stopped, stage a batch; then time the relay's
                # restart to the handler's commit of the batch's last event.
                already = await _wait_for(app, per_round * (rounds + 1))
                runtime = singletons_of(app).get(messaging)
                assert runtime.relay is not None
                await runtime.relay.stop()
                async with runtime.db.session_factory() as session, session.begin():
                    for _ in range(events):
                        key = uuid.uuid4().hex
                        event = CloudEvent.create("bench.row.made.v1", RowMade(id=key))
                        await runtime.publisher.publish(session, event, key=key)
                started = time.perf_counter()
                await runtime.relay.start()
                done = await _wait_for(app, already + events)
                elapsed = time.perf_counter() - started
                print(
                    f"end to end ({kind}): {done - already} of {events} events handled in "
                    f"{elapsed:.2f} s: {(done - already) / elapsed:.0f} events/s "
                    "(relayed, brokered, consumed once; one ordering key per event)"
                )


async def relay_only(postgres: str, events: int, max_keys: int) -> None:
    """The core relay alone on PostgreSQL, delivery a no-op: events per second with every
    event on its own ordering key, then with all on one key (the relay's own cost)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from saasfw.core.outbox import OutboxMessage, OutboxRelay, outbox_tables, stage_message

    url = postgres.replace("postgresql://", "postgresql+asyncpg://")
    schema = f"bench_relay_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    try:
        for label, keys in (("distinct keys", events), ("one key", 1)):
            tables = outbox_tables(f"relay_{keys}", metadata=MetaData())
            async with engine.begin() as conn:
                await conn.run_sync(tables.messages.metadata.create_all)
                for i in range(events):
                    await stage_message(tables, conn, key=f"k{i % keys}", type="t", payload="{}")
            done = 0
            finished = asyncio.Event()

            async def deliver(message: OutboxMessage, finished: asyncio.Event = finished) -> None:
                nonlocal done
                done += 1
                if done >= events:
                    finished.set()

            relay = OutboxRelay(tables, engine, deliver, poll_interval=0.01, max_keys=max_keys)
            started = time.perf_counter()
            async with relay:
                await asyncio.wait_for(finished.wait(), 600)
            elapsed = time.perf_counter() - started
            print(
                f"relay alone, {label}: {events} events in {elapsed:.2f} s, "
                f"{events / elapsed:,.0f} events/s (max_keys {max_keys})"
            )
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--broker", choices=["memory", "rabbit", "nats"], default="memory")
    parser.add_argument("--postgres", default=None)
    parser.add_argument(
        "--relay-only", action="store_true", help="the core relay alone (needs --postgres)"
    )
    parser.add_argument("--max-keys", type=int, default=64, help="the relay's max_keys")
    args = parser.parse_args()
    if args.relay_only:
        if args.postgres is None:
            parser.error("--relay-only needs --postgres")
        asyncio.run(relay_only(args.postgres, 2000, args.max_keys))
        return
    if args.smoke:
        asyncio.run(run("memory", None, rounds=2, per_round=10, events=20))
        return
    asyncio.run(run(args.broker, args.postgres, rounds=7, per_round=200, events=2000))


if __name__ == "__main__":
    main()
