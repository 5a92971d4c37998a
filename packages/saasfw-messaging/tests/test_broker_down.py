"""The relay against a NATS JetStream server that goes away: it backs off, loses nothing.

A private nats-server (its own port and store directory) is killed while events wait in
the outbox and started again on the same store; the shared server is never touched.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from faststream.nats import NatsBroker
from pydantic import BaseModel, SecretStr
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from saasfw.core.outbox import OutboxRelay, outbox_stats, outbox_tables
from saasfw.messaging import CloudEvent, EventSigner, Publisher
from saasfw.messaging.nats import NatsDelivery, NatsTopology

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

NATS_SERVER = shutil.which("nats-server")


class Tick(BaseModel):
    n: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateNats:
    """One nats-server process with JetStream, restartable on the same port and store."""

    def __init__(self, store: Path) -> None:
        self.port = _free_port()
        self.store = store
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert NATS_SERVER is not None
        self.process = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    if NATS_SERVER is None:
        pytest.skip("nats-server is not installed")
    server = PrivateNats(tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def _wait_for(condition: Callable[[], Awaitable[bool]], what: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(0.2)


async def test_relay_backs_off_while_jetstream_is_down_and_loses_nothing(
    private_nats: PrivateNats, pg_engine: AsyncEngine
) -> None:
    metadata = MetaData()
    tables = outbox_tables(metadata=metadata)
    async with pg_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    sessions = async_sessionmaker(pg_engine)
    publisher = Publisher(tables, EventSigner("/services/ticks", "k1", SecretStr("t" * 40)))
    topology = NatsTopology(stream="ticks", subject_prefix="ticks")

    async def stage(first: int, count: int) -> None:
        async with sessions() as session, session.begin():
            for n in range(first, first + count):
                event = CloudEvent.create("ticks.tick.sent.v1", Tick(n=n))
                await publisher.publish(session, event, key=f"k{n % 3}")

    async def depth() -> int:
        return (await outbox_stats(tables, pg_engine)).depth

    broker = NatsBroker(private_nats.url, logger=None, max_reconnect_attempts=-1)
    await topology.declare(broker)
    relay = OutboxRelay(
        tables,
        pg_engine,
        NatsDelivery(broker, topology, timeout=2.0),
        poll_interval=0.1,
        max_backoff=1.0,
    )
    try:
        async with relay:
            await stage(0, 20)
            relay.wake()
            await _wait_for(lambda: _is(depth, 0), "the first 20 events to be delivered", 60)

            private_nats.kill()
            await stage(20, 30)
            relay.wake()
            await _wait_for(
                lambda: _holds(lambda: relay.state.consecutive_errors >= 3),
                "the relay to notice the broker is down",
                90,
            )
            assert relay.state.degraded
            assert relay.state.last_error is not None
            assert await depth() == 30  # nothing was dropped while the broker was away

            private_nats.start()
            await _wait_for(lambda: _is(depth, 0), "the backlog to drain after the restart", 120)
            assert not relay.state.degraded

        js = (await broker.connect()).jetstream()
        assert (await js.stream_info(topology.stream)).state.messages == 50
    finally:
        await broker.stop()


async def _is(probe: Callable[[], Awaitable[int]], expected: int) -> bool:
    return await probe() == expected


async def _holds(check: Callable[[], bool]) -> bool:
    return check()
