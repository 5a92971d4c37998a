"""Dead letters on the real RabbitMQ and PostgreSQL: recorded, listed, inspected, replayed."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from faststream.rabbit import RabbitBroker
from pydantic import BaseModel, SecretStr
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from saasfw.core.outbox import OutboxRelay, outbox_tables
from saasfw.messaging import (
    CloudEvent,
    EventConsumer,
    EventSigner,
    EventVerifier,
    Publisher,
    Received,
    dead_letter_table,
    inbox_table,
)
from saasfw.messaging.rabbit import RabbitDelivery, RabbitTopology, subscribe_rabbit

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]

SOURCE = "/services/orders"
KEY = SecretStr("dead-letter-key-" + "x" * 32)
TYPE = "orders.order.created.v1"


class OrderCreated(BaseModel):
    order_id: str


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the command line as a user would, in a fresh process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_DB__")}
    return subprocess.run(
        [sys.executable, "-m", "saasfw.messaging", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


async def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, *args)


async def test_dead_letters_are_recorded_listed_inspected_and_replayed_once(
    rabbitmq_url: str, postgres_url: str, pg_engine: AsyncEngine, tools: Any
) -> None:
    metadata = MetaData()
    outbox = outbox_tables("saasfw_messaging_outbox", metadata=metadata)
    inbox = inbox_table(metadata=metadata)
    dead = dead_letter_table(metadata=metadata)
    effects = Table(
        "effects",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("order_id", String(50), nullable=False),
    )
    async with pg_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        schema = (await conn.execute(text("SELECT current_schema()"))).scalar_one()
    sessions = async_sessionmaker(pg_engine, expire_on_commit=False)
    broken = {"bad-1"}

    async def ship(received: Received[OrderCreated], session: AsyncSession) -> None:
        if received.data.order_id in broken:
            raise RuntimeError(f"cannot ship {received.data.order_id}\nINSERT ... secret")
        await session.execute(insert(effects).values(order_id=received.data.order_id))

    async def look(received: Received[OrderCreated], session: AsyncSession) -> None:
        return None

    verifier = EventVerifier({SOURCE: {"k1": KEY}})
    shipping = EventConsumer(
        sessions, inbox, verifier, max_attempts=2, retry_backoff=0.05, dead_letters=dead
    )
    shipping.add_handler(TYPE, OrderCreated, ship)
    # Another service's queue bound to the same type, sharing nothing but the exchange.
    bystander = EventConsumer(sessions, inbox_table("bystander_inbox", metadata=metadata), verifier)
    bystander.add_handler(TYPE, OrderCreated, look)
    async with pg_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)

    suffix = uuid.uuid4().hex[:10]
    exchange = f"saasfw-dl-{suffix}"
    broker = RabbitBroker(rabbitmq_url, logger=None)
    queue = f"saasfw-dl-ship-{suffix}"
    subscriptions = [
        subscribe_rabbit(broker, shipping, RabbitTopology(exchange, queue)),
        subscribe_rabbit(broker, bystander, RabbitTopology(exchange, f"saasfw-dl-look-{suffix}")),
    ]
    await broker.connect()
    for subscription in subscriptions:
        await subscription.declare()
    await broker.start()
    publisher = Publisher(outbox, EventSigner(SOURCE, "k1", KEY))
    published = []
    async with sessions() as session, session.begin():
        for order_id in ("ok-1", "bad-1", "ok-2"):
            event = CloudEvent.create(TYPE, OrderCreated(order_id=order_id))
            published.append(await publisher.publish(session, event, key=order_id))
    delivery = RabbitDelivery(broker, exchange)
    relay = OutboxRelay(outbox, pg_engine, delivery, poll_interval=0.1)
    try:
        async with relay:
            forgery = tools.forged(published[0])
            await delivery(forgery)

            async def two_dead() -> bool:
                async with pg_engine.connect() as conn:
                    return len((await conn.execute(select(dead.c.id))).all()) >= 2

            await tools.wait_for(two_dead, "two dead letters in the table", 60)
            await tools.wait_for(
                lambda: _true(bystander.stats.processed + bystander.stats.dead_lettered >= 4),
                "the bystander to see every event",
                60,
            )
            base = ["dead-letters", "--database-url", postgres_url, "--schema", schema]

            listed = await run_cli(*base, "list")
            assert listed.returncode == 0, listed.stderr
            assert "handler-failed" in listed.stdout
            assert "signature-mismatch" in listed.stdout
            assert queue in listed.stdout
            rows = [
                json.loads(line)
                for line in (await run_cli(*base, "list", "--json")).stdout.splitlines()
            ]
            by_reason = {row["reason"]: row for row in rows}
            failed = by_reason["handler-failed"]
            # A forgery is keyed by its body, never by the id it claims.
            digest = hashlib.sha256(forgery.payload.encode()).hexdigest()
            assert by_reason["signature-mismatch"]["message_id"] == digest
            assert failed["message_id"] == published[1].id
            assert failed["attempts"] == 2
            assert failed["error"] == "RuntimeError: cannot ship bad-1"

            shown = await run_cli(*base, "inspect", str(failed["id"]))
            assert shown.returncode == 0, shown.stderr
            assert "RuntimeError: cannot ship bad-1" in shown.stdout
            assert '"order_id": "bad-1"' in shown.stdout
            assert "secret" not in shown.stdout
            missing = await run_cli(*base, "inspect", "987654321")
            assert missing.returncode == 1
            assert "no dead letter with id 987654321" in missing.stderr

            broken.clear()  # the bug is fixed and deployed: replay
            seen_by_bystander = bystander.stats.processed
            replayed = await run_cli(*base, "replay", str(failed["id"]))
            assert replayed.returncode == 0, replayed.stderr
            assert f"event {published[1].id} ({TYPE}) staged for delivery" in replayed.stdout

            async def shipped() -> bool:
                async with pg_engine.connect() as conn:
                    done = (await conn.execute(select(effects.c.order_id))).scalars().all()
                return "bad-1" in done

            await tools.wait_for(shipped, "the replayed order to ship", 60)
            again = await run_cli(*base, "replay", str(failed["id"]))
            assert again.returncode == 1
            assert "already replayed" in again.stderr
            left = await run_cli(*base, "list")
            assert "signature-mismatch" in left.stdout
            assert "handler-failed" not in left.stdout
            await asyncio.sleep(1.0)  # a stray copy to the bystander would arrive by now
            assert bystander.stats.processed == seen_by_bystander
            assert bystander.stats.duplicates == 0
    finally:
        await broker.stop()
    async with pg_engine.connect() as conn:
        shipped_ids = sorted((await conn.execute(select(effects.c.order_id))).scalars())
        row = (await conn.execute(select(dead).where(dead.c.id == failed["id"]))).mappings().one()
    assert shipped_ids == ["bad-1", "ok-1", "ok-2"]
    assert (row["status"], row["replays"]) == ("replayed", 1)


def test_the_cli_says_what_is_wrong_with_exit_codes() -> None:
    no_database = cli("dead-letters", "list")
    assert no_database.returncode == 2
    assert "--database-url" in no_database.stderr
    unreachable = cli(
        "dead-letters", "--database-url", "postgresql://u:hunter2@127.0.0.1:9/x", "list"
    )
    assert unreachable.returncode == 3
    assert "the database could not be used" in unreachable.stderr
    assert "hunter2" not in unreachable.stderr
    nothing = cli("dead-letters", "--database-url", "sqlite:///x.db", "replay")
    assert nothing.returncode == 2
    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("saasfw-messaging ")


async def _true(value: bool) -> bool:
    return value
