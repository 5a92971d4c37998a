import asyncio
import random
from collections import defaultdict

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from saasfw.core.outbox import (
    OutboxMessage,
    OutboxRelay,
    OutboxTables,
    outbox_stats,
    outbox_tables,
    stage_message,
)


async def _tables(engine: AsyncEngine) -> OutboxTables:
    tables = outbox_tables("test_outbox")
    async with engine.begin() as conn:
        await conn.run_sync(tables.messages.metadata.create_all)
    return tables


async def test_staging_follows_the_callers_transaction(engine: AsyncEngine) -> None:
    tables = await _tables(engine)
    async with AsyncSession(engine) as session, session.begin():
        staged = await stage_message(tables, session, key="order-1", type="t", payload="{}")
    assert staged.sequence == 1
    async with AsyncSession(engine) as session, session.begin():
        await stage_message(tables, session, key="order-1", type="t", payload="{}")
        await session.rollback()  # the business change failed
    async with engine.begin() as conn:
        await stage_message(tables, conn, key="order-1", type="t", payload="{}")
        rows = (await conn.execute(select(tables.messages.c.sequence))).scalars().all()
    # The rolled-back staging took number 2 and gave it back with its transaction.
    assert sorted(rows) == [1, 2]
    stats = await outbox_stats(tables, engine)
    assert stats.depth == 2
    assert stats.oldest_age is not None
    assert stats.oldest_age >= 0


async def test_relay_delivers_in_order_per_key_and_retries_a_failure(engine: AsyncEngine) -> None:
    tables = await _tables(engine)
    async with engine.begin() as conn:
        for n in range(30):
            await stage_message(tables, conn, key=f"k{n % 3}", type="t", payload=str(n))
    seen: dict[str, list[int]] = defaultdict(list)
    failed_once: set[str] = set()

    async def deliver(message: OutboxMessage) -> None:
        if message.ordering_key == "k1" and message.sequence == 4 and not failed_once:
            failed_once.add(message.message_id)
            raise ConnectionError("broker went away")
        seen[message.ordering_key].append(message.sequence)

    relay = OutboxRelay(tables, engine, deliver, max_backoff=0.3)
    for _ in range(200):
        await relay.run_once()
        if sum(map(len, seen.values())) == 30:
            break
        await asyncio.sleep(0.05)
    assert dict(seen) == {f"k{k}": list(range(1, 11)) for k in range(3)}
    assert relay.state.failed == 1
    assert (await outbox_stats(tables, engine)).depth == 0


async def test_a_dead_relays_keys_move_to_another_after_the_lease(engine: AsyncEngine) -> None:
    tables = await _tables(engine)
    async with engine.begin() as conn:
        await stage_message(tables, conn, key="k", type="t", payload="1")
    got: list[str] = []

    async def deliver(message: OutboxMessage) -> None:
        got.append(message.message_id)

    dead = OutboxRelay(tables, engine, deliver, relay_id="dead", lease_seconds=1.0)
    assert await dead._claim() == ["k"]  # claims, then "crashes" before delivering
    alive = OutboxRelay(tables, engine, deliver, relay_id="alive", lease_seconds=1.0)
    assert await alive.run_once() == 0  # the lease still holds
    for _ in range(100):
        if await alive.run_once():
            break
        await asyncio.sleep(0.1)
    assert len(got) == 1


@pytest.mark.parametrize("engine", ["postgres"], indirect=True)
async def test_two_relays_deliver_each_message_once_in_order(engine: AsyncEngine) -> None:
    tables = await _tables(engine)
    delivered: list[tuple[str, int, str]] = []

    async def deliver(message: OutboxMessage) -> None:
        await asyncio.sleep(random.uniform(0, 0.002))
        delivered.append((message.ordering_key, message.sequence, message.message_id))

    relays = [OutboxRelay(tables, engine, deliver, poll_interval=0.05) for _ in range(2)]
    total = 400

    async def produce(worker: int) -> None:
        for n in range(total // 4):
            async with engine.begin() as conn:
                await stage_message(
                    tables, conn, key=f"order-{(n * 7 + worker) % 20}", type="t", payload="x"
                )

    async with relays[0], relays[1]:
        await asyncio.gather(*(produce(w) for w in range(4)))
        for _ in range(600):
            if len(delivered) >= total and (await outbox_stats(tables, engine)).depth == 0:
                break
            await asyncio.sleep(0.1)
    ids = [d[2] for d in delivered]
    assert len(ids) == total
    assert len(set(ids)) == total  # nothing delivered twice when nothing crashed
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, sequence, _ in delivered:
        per_key[key].append(sequence)
    for sequences in per_key.values():
        assert sequences == list(range(1, len(sequences) + 1))
    assert relays[0].state.delivered + relays[1].state.delivered == total


async def test_a_slow_batch_keeps_its_lease_and_a_long_key_continues_next_round(
    engine: AsyncEngine,
) -> None:
    # Each delivery takes longer than a third of the lease and a batch longer than the
    # whole lease: the relay renews between messages, so the second relay never takes the
    # key mid-batch (which would deliver twice and out of order). The key holds more than
    # one batch: it continues, in order, in the next rounds.
    tables = await _tables(engine)
    async with engine.begin() as conn:
        for n in range(12):
            await stage_message(tables, conn, key="slow", type="t", payload=str(n))
    delivered: list[tuple[int, str]] = []

    async def deliver(message: OutboxMessage) -> None:
        await asyncio.sleep(0.25)
        delivered.append((message.sequence, message.message_id))

    relays = [
        OutboxRelay(tables, engine, deliver, lease_seconds=0.6, batch_size=5, poll_interval=0.05)
        for _ in range(2)
    ]
    async with relays[0], relays[1]:
        for _ in range(300):
            if len(delivered) >= 12 and (await outbox_stats(tables, engine)).depth == 0:
                break
            await asyncio.sleep(0.05)
    assert [sequence for sequence, _ in delivered] == list(range(1, 13))
    assert len({message_id for _, message_id in delivered}) == 12
