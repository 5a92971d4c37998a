"""Publisher and consumer without a broker: staging, signing, inbox dedupe, outcomes."""

from __future__ import annotations

import time

import pytest
from pydantic import BaseModel, SecretStr
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from saasfw.core.outbox import OutboxMessage, OutboxRelay, outbox_tables
from saasfw.messaging import (
    Ack,
    CloudEvent,
    DeadLetter,
    EventConsumer,
    EventSigner,
    EventVerifier,
    Publisher,
    Received,
    Retry,
    current_event,
    inbox_table,
    prune_inbox,
)

SOURCE = "/services/orders"
KEY = SecretStr("orders-key-" + "x" * 32)


class OrderCreated(BaseModel):
    order_id: str
    total_cents: int


def _schema() -> tuple[MetaData, Table]:
    metadata = MetaData()
    effects = Table(
        "effects",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("order_id", String(50), nullable=False),
        Column("actor", String(50), nullable=True),
    )
    return metadata, effects


async def _setup(
    engine: AsyncEngine, **consumer_options: float
) -> tuple[Publisher, EventConsumer, Table, OutboxRelay, list[OutboxMessage]]:
    metadata, effects = _schema()
    tables = outbox_tables(metadata=metadata)
    inbox = inbox_table(metadata=metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    publisher = Publisher(
        tables, EventSigner(SOURCE, "k1", KEY), actor=lambda: "user-7", tenant=lambda: "acme"
    )
    consumer = EventConsumer(
        async_sessionmaker(engine, expire_on_commit=False),
        inbox,
        EventVerifier({SOURCE: {"k1": KEY}}),
        max_attempts=3,
        retry_backoff=0.01,
        **consumer_options,
    )
    delivered: list[OutboxMessage] = []

    async def deliver(message: OutboxMessage) -> None:
        delivered.append(message)

    relay = OutboxRelay(tables, engine, deliver, poll_interval=0.05)

    @consumer.handler("orders.order.created.v1", OrderCreated)
    async def on_created(received: Received[OrderCreated], session: AsyncSession) -> None:
        assert current_event() == received.event
        if received.data.order_id == "poison":
            raise RuntimeError("cannot ship a poisoned order")
        await session.execute(
            insert(effects).values(order_id=received.data.order_id, actor=received.event.actor)
        )

    return publisher, consumer, effects, relay, delivered


def _event(order_id: str) -> CloudEvent:
    return CloudEvent.create(
        "orders.order.created.v1", OrderCreated(order_id=order_id, total_cents=100)
    )


async def _count(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_publish_stages_signed_event_with_sequence_and_context(engine: AsyncEngine) -> None:
    publisher, _, _, relay, delivered = await _setup(engine)
    sessions = async_sessionmaker(engine)
    async with sessions() as session, session.begin():
        first = await publisher.publish(session, _event("a"), key="order-1")
        second = await publisher.publish(session, _event("b"), key="order-1")
    assert (first.sequence, second.sequence) == (1, 2)
    assert (first.actor, first.tenant, first.partitionkey) == ("user-7", "acme", "order-1")
    await relay.run_once()
    assert [m.message_id for m in delivered] == [first.id, second.id]
    body = CloudEvent.model_validate_json(delivered[1].payload)
    assert EventVerifier({SOURCE: {"k1": KEY}}).verify(body) == second
    assert body.sequence == 2


async def test_rolled_back_publish_sends_nothing(engine: AsyncEngine) -> None:
    publisher, _, _, relay, delivered = await _setup(engine)
    sessions = async_sessionmaker(engine)

    async def refused_change() -> None:
        async with sessions() as session, session.begin():
            await publisher.publish(session, _event("a"), key="order-1")
            raise RuntimeError("a business rule refused the change")

    with pytest.raises(RuntimeError, match="business rule"):
        await refused_change()
    assert await relay.run_once() == 0
    assert delivered == []


async def test_redelivered_event_has_its_side_effects_once(engine: AsyncEngine) -> None:
    publisher, consumer, effects, relay, delivered = await _setup(engine)
    async with async_sessionmaker(engine)() as session, session.begin():
        await publisher.publish(session, _event("a"), key="order-1")
    await relay.run_once()
    body = delivered[0].payload.encode()
    assert await consumer.process(body, attempt=1) == Ack()
    assert current_event() is None
    assert await consumer.process(body, attempt=2) == Ack(duplicate=True)
    assert await _count(engine, effects) == 1
    assert (consumer.stats.processed, consumer.stats.duplicates) == (1, 1)


async def test_failing_handler_retries_then_dead_letters_without_effects(
    engine: AsyncEngine,
) -> None:
    publisher, consumer, effects, relay, delivered = await _setup(engine)
    async with async_sessionmaker(engine)() as session, session.begin():
        await publisher.publish(session, _event("poison"), key="order-9")
    await relay.run_once()
    body = delivered[0].payload.encode()
    first = await consumer.process(body, attempt=1)
    assert isinstance(first, Retry)
    assert "cannot ship a poisoned order" in first.error
    assert isinstance(await consumer.process(body, attempt=2), Retry)
    last = await consumer.process(body, attempt=3)
    assert last == DeadLetter(reason="handler-failed", error=last.error)
    assert "RuntimeError: cannot ship a poisoned order" in last.error
    # The inbox row rolled back with the failed handler: nothing claims it was processed.
    assert await _count(engine, effects) == 0
    assert await _count(engine, consumer.inbox) == 0


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        ("forged-actor", "signature-mismatch"),
        ("unknown-key", "signature-unknown-key"),
        ("unsigned", "signature-missing"),
        ("other-type", "no-handler"),
        ("bad-payload", "invalid-payload"),
        ("garbage", "malformed"),
    ],
)
async def test_unprocessable_events_are_dead_lettered_at_once_untrusted(
    engine: AsyncEngine, mutation: str, reason: str
) -> None:
    _, consumer, effects, _, _ = await _setup(engine)
    signer = EventSigner(SOURCE, "k1", KEY)
    good = signer.sign(_event("a").model_copy(update={"actor": "user-7"}))
    body: bytes
    if mutation == "forged-actor":
        body = good.model_copy(update={"actor": "admin"}).to_json().encode()
    elif mutation == "unknown-key":
        body = EventSigner(SOURCE, "k9", KEY).sign(_event("a")).to_json().encode()
    elif mutation == "unsigned":
        body = _event("a").model_copy(update={"source": SOURCE}).to_json().encode()
    elif mutation == "other-type":
        other = CloudEvent.create(
            "orders.order.deleted.v1", OrderCreated(order_id="a", total_cents=1)
        )
        body = signer.sign(other).to_json().encode()
    elif mutation == "bad-payload":
        bad = good.model_copy(update={"data": {"order_id": "a"}, "signature": None})
        body = signer.sign(bad).to_json().encode()
    else:
        body = b"\x00not json"
    outcome = await consumer.process(body, attempt=1)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason == reason
    assert KEY.get_secret_value() not in outcome.error
    assert await _count(engine, effects) == 0


async def test_pruned_inbox_keeps_recent_rows(engine: AsyncEngine) -> None:
    publisher, consumer, effects, relay, delivered = await _setup(engine)
    async with async_sessionmaker(engine)() as session, session.begin():
        for order in ("a", "b"):
            await publisher.publish(session, _event(order), key="order-1")
    await relay.run_once()
    for message in delivered:
        assert await consumer.process(message.payload.encode(), attempt=1) == Ack()
    async with engine.begin() as conn:
        await conn.execute(
            update(consumer.inbox)
            .where(consumer.inbox.c.message_id == delivered[0].message_id)
            .values(processed_at=time.time() - 8 * 86400)
        )
    assert await prune_inbox(engine, consumer.inbox, older_than=7 * 86400) == 1
    assert await _count(engine, consumer.inbox) == 1
    # The recent one is still remembered: redelivering it changes nothing.
    recent = delivered[1].payload.encode()
    assert await consumer.process(recent, attempt=2) == Ack(duplicate=True)
    assert await _count(engine, effects) == 2


async def test_dead_letter_error_keeps_no_statement_parameters(engine: AsyncEngine) -> None:
    publisher, consumer, effects, relay, delivered = await _setup(engine)

    async def leaky(received: Received[OrderCreated], session: AsyncSession) -> None:
        await session.execute(insert(effects).values(id=1, order_id="secret-customer-data"))
        await session.execute(insert(effects).values(id=1, order_id="secret-customer-data"))

    consumer.add_handler("orders.order.shipped.v1", OrderCreated, leaky)
    async with async_sessionmaker(engine)() as session, session.begin():
        shipped = CloudEvent.create(
            "orders.order.shipped.v1", OrderCreated(order_id="a", total_cents=1)
        )
        await publisher.publish(session, shipped, key="order-1")
    await relay.run_once()
    outcome = await consumer.process(delivered[0].payload.encode(), attempt=3)
    assert isinstance(outcome, DeadLetter)
    assert outcome.error.startswith("IntegrityError: ")
    assert "secret-customer-data" not in outcome.error


async def test_an_event_delivered_past_its_attempts_without_an_outcome_is_dead_lettered(
    engine: AsyncEngine,
) -> None:
    """Deliveries past max_attempts mean crashes (a failure is parked at max_attempts):
    the handler does not run again, the event is dead-lettered, unless it was applied."""
    publisher, consumer, effects, relay, delivered = await _setup(engine)
    async with async_sessionmaker(engine)() as session, session.begin():
        await publisher.publish(session, _event("a"), key="order-1")
        await publisher.publish(session, _event("b"), key="order-2")
    await relay.run_once()
    crashed, applied = (message.payload.encode() for message in delivered)
    outcome = await consumer.process(crashed, attempt=4)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason == "max-deliveries"
    assert "delivered 4 times without an outcome" in outcome.error
    assert await _count(engine, effects) == 0
    # Its inbox row was rolled back: a replay later runs the handler.
    assert await consumer.process(crashed, attempt=1) == Ack()
    # An event whose effects were committed before the crashes is a duplicate, not a dead letter.
    assert await consumer.process(applied, attempt=1) == Ack()
    assert await consumer.process(applied, attempt=7) == Ack(duplicate=True)
    assert await _count(engine, effects) == 2
