"""Fixtures for the messaging tests: databases, and the real RabbitMQ and NATS JetStream.

``rabbitmq_url`` / ``nats_url`` read ``SAASFW_TEST_RABBITMQ_URL`` / ``SAASFW_TEST_NATS_URL``
in the style of the root conftest: skip when unset, fail under ``SAASFW_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import BaseModel, SecretStr
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from saasfw.core.outbox import OutboxMessage, OutboxRelay, OutboxTables, outbox_tables
from saasfw.messaging import (
    CloudEvent,
    EventConsumer,
    EventSigner,
    EventVerifier,
    Publisher,
    Received,
    inbox_table,
)

FLOW_SOURCE = "/services/orders"
FLOW_KEY = SecretStr("orders-key-" + "f" * 32)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rabbitmq: needs a real RabbitMQ (SAASFW_TEST_RABBITMQ_URL)")
    config.addinivalue_line("markers", "nats: needs a real NATS JetStream (SAASFW_TEST_NATS_URL)")


def _required() -> bool:
    return os.environ.get("SAASFW_REQUIRE_SERVICES", "").strip() in {"1", "true", "yes"}


def _service_url(env_var: str, default_port: int) -> str:
    url = os.environ.get(env_var, "").strip()
    if not url:
        reason = f"{env_var} is not set"
    else:
        parts = urlsplit(url)
        try:
            with socket.create_connection(
                (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2.0
            ):
                return url
        except OSError as exc:
            reason = f"{env_var}: {parts.hostname}:{parts.port} is unreachable ({exc})"
    if _required():
        pytest.fail(f"SAASFW_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """A reachable RabbitMQ URL (``amqp://user:pass@host:port/``), or skip/fail."""
    return _service_url("SAASFW_TEST_RABBITMQ_URL", 5672)


@pytest.fixture(scope="session")
def nats_url() -> str:
    """A reachable NATS URL with JetStream (``nats://host:port``), or skip/fail."""
    return _service_url("SAASFW_TEST_NATS_URL", 4222)


async def _postgres_engine(url: str) -> AsyncIterator[AsyncEngine]:
    schema = f"messaging_{uuid.uuid4().hex[:10]}"
    async_url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    admin = create_async_engine(async_url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    made = create_async_engine(
        async_url, connect_args={"server_settings": {"search_path": schema}}, pool_size=10
    )
    try:
        yield made
    finally:
        await made.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh SQLite file, and on a fresh schema of the real PostgreSQL."""
    if request.param == "sqlite":
        made = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'messaging.db'}")
        yield made
        await made.dispose()
        return
    async for made in _postgres_engine(request.getfixturevalue("postgres_url")):
        yield made


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh schema of the real PostgreSQL (the broker tests share it)."""
    async for made in _postgres_engine(postgres_url):
        yield made


class FlowOrderCreated(BaseModel):
    order_id: str


@dataclass
class OrderFlow:
    """The broker tests' shared scenario: an outbox, two consumer replicas, one inbox.

    Events for ``keys`` ordering keys plus one poison event (its handler always fails) are
    staged; every handled event leaves one row in ``effects`` with its key and sequence.
    """

    engine: AsyncEngine
    tables: OutboxTables
    effects: Table
    sessions: async_sessionmaker[AsyncSession]
    consumers: list[EventConsumer]
    signer: EventSigner
    events: int = 200
    keys: int = 10
    attempts: int = 3

    def stats(self, counter: str) -> int:
        """A ConsumerStats counter summed over the replicas."""
        return sum(getattr(consumer.stats, counter) for consumer in self.consumers)

    async def stage(self) -> list[CloudEvent]:
        """Stage the events (20 per transaction) and the poison one; return the good ones."""
        publisher = Publisher(self.tables, self.signer, tenant=lambda: "acme")
        published: list[CloudEvent] = []
        for batch in range(self.events // 20):
            async with self.sessions() as session, session.begin():
                for n in range(20):
                    index = batch * 20 + n
                    event = CloudEvent.create(
                        "orders.order.created.v1", FlowOrderCreated(order_id=f"order-{index}")
                    )
                    key = f"customer-{index % self.keys}"
                    published.append(await publisher.publish(session, event, key=key))
                if batch == 3:
                    poison = CloudEvent.create(
                        "orders.order.created.v1", FlowOrderCreated(order_id="poison-1")
                    )
                    await publisher.publish(session, poison, key="customer-poison")
        return published

    def relays(
        self, deliveries: list[Callable[[OutboxMessage], Awaitable[None]]]
    ) -> list[OutboxRelay]:
        """One relay per delivery callable, small batches so keys interleave."""
        return [
            OutboxRelay(
                self.tables, self.engine, deliver, batch_size=7, max_keys=4, poll_interval=0.1
            )
            for deliver in deliveries
        ]

    async def effects_count(self) -> int:
        async with self.engine.connect() as conn:
            query = select(func.count()).select_from(self.effects)
            return int((await conn.execute(query)).scalar_one())

    async def all_handled(self) -> bool:
        """Every good event has its effect and the poison event was dead-lettered."""
        return await self.effects_count() >= self.events and self.stats("dead_lettered") >= 1

    async def assert_once_in_order(self) -> None:
        """Exactly one effect per event, and each key's effects in sequence order."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(self.effects).order_by(self.effects.c.id))).all()
        assert len(rows) == self.events
        assert len({row.message_id for row in rows}) == self.events
        by_key: dict[str, list[int]] = {}
        for row in rows:
            by_key.setdefault(row.ordering_key, []).append(row.sequence)
        assert len(by_key) == self.keys
        for key, sequences in by_key.items():
            assert sequences == list(range(1, self.events // self.keys + 1)), key


def as_outbox_message(event: CloudEvent) -> OutboxMessage:
    """An outbox row for ``event``, as a relay would hand it to a delivery callable."""
    return OutboxMessage(
        message_id=event.id,
        ordering_key=event.partitionkey or "",
        sequence=event.sequence or 0,
        type=event.type,
        payload=event.to_json(),
        headers={},
        created_at=time.time(),
        attempts=0,
    )


def forged(event: CloudEvent) -> OutboxMessage:
    """``event`` with a new id and its actor changed after signing."""
    return as_outbox_message(event.model_copy(update={"id": uuid.uuid4().hex, "actor": "admin"}))


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str, limit: float) -> None:
    """Poll ``condition`` until it holds; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(0.2)


class FlowTools:
    """What the broker tests use from here (fixtures are the one way to share them)."""

    as_outbox_message = staticmethod(as_outbox_message)
    forged = staticmethod(forged)
    wait_for = staticmethod(wait_for)


@pytest.fixture
def tools() -> type[FlowTools]:
    return FlowTools


@pytest.fixture
async def order_flow(pg_engine: AsyncEngine) -> OrderFlow:
    """The scenario's tables on a fresh PostgreSQL schema, and two consumer replicas."""
    metadata = MetaData()
    tables = outbox_tables(metadata=metadata)
    inbox = inbox_table(metadata=metadata)
    effects = Table(
        "effects",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("message_id", String(64), nullable=False),
        Column("ordering_key", String(50), nullable=False),
        Column("sequence", BigInteger, nullable=False),
    )
    async with pg_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    sessions = async_sessionmaker(pg_engine, expire_on_commit=False)

    async def on_created(received: Received[FlowOrderCreated], session: AsyncSession) -> None:
        if received.data.order_id.startswith("poison"):
            raise RuntimeError(f"order {received.data.order_id} cannot be shipped")
        event = received.event
        await session.execute(
            insert(effects).values(
                message_id=event.id, ordering_key=event.partitionkey, sequence=event.sequence
            )
        )

    consumers = []
    for _ in range(2):
        consumer = EventConsumer(
            sessions,
            inbox,
            EventVerifier({FLOW_SOURCE: {"k1": FLOW_KEY}}),
            max_attempts=3,
            retry_backoff=0.05,
            retry_max_backoff=0.2,
        )
        consumer.add_handler("orders.order.created.v1", FlowOrderCreated, on_created)
        consumers.append(consumer)
    return OrderFlow(
        pg_engine, tables, effects, sessions, consumers, EventSigner(FLOW_SOURCE, "k1", FLOW_KEY)
    )
