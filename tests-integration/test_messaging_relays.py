"""Issue 19 acceptance: two relays publish once, poison is isolated, a broker outage holds.

Real ``orders-service`` and ``projections-service`` processes on the real brokers:

- two orders replicas relay one outbox while interleaved updates hit the same orders:
  a raw subscriber on the broker sees every event published exactly once, and the
  consumer applies each order's events in their per-order sequence;
- a poison event (signed, but naming no tenant: the handler refuses it every time) is
  dead-lettered after ``dead_letter_attempts`` with its error recorded, while the orders
  created around it are projected;
- with the broker down (a private RabbitMQ or NATS node of this test), orders are still
  created (201), readiness stays 200 with the broker degraded, the outbox depth metric
  rises, and drains after recovery.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest


def _harness() -> Any:
    """tests-integration/_messaging_harness.py (this directory is not on ``sys.path``)."""
    name = "saasfw_it_messaging_harness"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).with_name("_messaging_harness.py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


h = _harness()


def _url(variable: str) -> str:
    url = os.environ.get(variable, "").strip()
    if not url:
        if os.environ.get("SAASFW_REQUIRE_SERVICES", "").strip() in {"1", "true", "yes"}:
            pytest.fail(f"SAASFW_REQUIRE_SERVICES=1 but {variable} is not set", pytrace=False)
        pytest.skip(f"{variable} is not set")
    return url


class RawCounter(threading.Thread):
    """A plain subscriber on the broker counting every event id published to a destination."""

    def __init__(self, kind: str, url: str, destination: str) -> None:
        super().__init__(daemon=True)
        self.kind, self.url, self.destination = kind, url, destination
        self.ids: Counter[str] = Counter()
        self.ready = threading.Event()
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
            self.ready.set()

    def _count(self, body: bytes) -> None:
        self.ids[json.loads(body)["id"]] += 1

    async def _main(self) -> None:
        if self.kind == "nats":
            import nats

            client = await nats.connect(self.url)

            async def seen(message: Any) -> None:
                self._count(message.data)

            await client.subscribe(f"{self.destination}.>", cb=seen)
            self.ready.set()
            await asyncio.to_thread(self.halt.wait)
            await client.drain()
            return
        import aio_pika

        connection = await aio_pika.connect_robust(self.url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(self.destination, ensure=True)
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, routing_key="#")

            async def seen_rabbit(message: Any) -> None:
                async with message.process():
                    self._count(message.body)

            await queue.consume(seen_rabbit)
            self.ready.set()
            await asyncio.to_thread(self.halt.wait)


def _broker_url(kind: str) -> str:
    return _url("SAASFW_TEST_RABBITMQ_URL" if kind == "rabbit" else "SAASFW_TEST_NATS_URL")


def _update_many(base_urls: list[str], bearer: str, order_id: str, updates: int) -> None:
    """``updates`` PATCHes of one order, alternating replicas, each with the version read."""
    headers = {"Authorization": f"Bearer {bearer}"}
    version = 1
    with httpx.Client(timeout=60) as client:
        for n in range(updates):
            base = base_urls[n % len(base_urls)]
            response = client.patch(
                f"{base}/orders/{order_id}",
                json={"version": version, "quantity": 2 + n},
                headers=headers,
            )
            assert response.status_code == 200, response.text
            version = response.json()["version"]


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("kind", [pytest.param("rabbit", id="rabbitmq"), pytest.param("nats")])
def test_two_relays_publish_each_event_once_and_each_order_stays_in_order(
    kind: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    orders_count, updates = 20, 5
    broker_url = _broker_url(kind)
    pair = h.make_pair(
        tmp_path,
        postgres_url=postgres_url,
        redis_url=redis_url,
        kind=kind,
        broker_url=broker_url,
        replicas=2,
    )
    counter = RawCounter(kind, broker_url, pair.destination)
    try:
        pair.projections.start()  # declares the exchange or stream the counter listens on
        counter.start()
        assert counter.ready.wait(60)
        assert counter.error is None, counter.error
        for replica in pair.orders:
            replica.start()
        bases = [replica.base_url for replica in pair.orders]
        bearer = h.token(bases[0])
        created: list[str] = []
        for n in range(orders_count):
            response = httpx.post(
                f"{bases[n % 2]}/orders",
                json=h.new_order(n),
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=60,
            )
            assert response.status_code == 201, response.text
            created.append(response.json()["id"])
        with ThreadPoolExecutor(max_workers=8) as pool:
            for future in [
                pool.submit(_update_many, bases, bearer, order_id, updates) for order_id in created
            ]:
                future.result()
        expected = orders_count * (1 + updates)
        h.wait_for(lambda: len(h.projection_log(pair)) >= expected, "every event applied", 300)
        h.wait_for(lambda: sum(counter.ids.values()) >= expected, "the broker count", 120)
        time.sleep(5)  # a second publish of anything would arrive by now
        rows = h.projection_log(pair)
    finally:
        counter.halt.set()
        counter.join(timeout=30)
        pair.cleanup()
    assert counter.error is None, counter.error
    assert len(counter.ids) == expected
    assert all(n == 1 for n in counter.ids.values()), counter.ids.most_common(3)
    assert len(rows) == expected
    assert {r["outcome"] for r in rows} == {"applied"}
    for order_id in created:
        sequences = [r["sequence"] for r in rows if r["order_id"] == order_id]
        assert sequences == list(range(1, updates + 2)), (order_id, sequences)


def _stage_poison(pair: Any, key: str) -> str:
    """A signed orders event without a tenant, staged in the orders outbox like a bug would."""
    from pydantic import BaseModel, SecretStr
    from sqlalchemy.ext.asyncio import create_async_engine

    from saasfw.core.outbox import outbox_tables
    from saasfw.messaging import CloudEvent, EventSigner, Publisher

    class Created(BaseModel):
        order_id: str
        customer_email: str
        quantity: int
        unit_price_cents: int
        currency: str
        version: int

    env = pair.orders[0].env
    signer = EventSigner(
        "/services/orders-service",
        env["SAASFW_MESSAGING__SIGNING_KEY_ID"],
        SecretStr(env["SAASFW_MESSAGING__SIGNING_KEY"]),
    )
    publisher = Publisher(outbox_tables("saasfw_messaging_outbox"), signer)
    event = CloudEvent.create(
        "orders.order.created.v1",
        Created(
            order_id=key,
            customer_email="poison@example.com",
            quantity=1,
            unit_price_cents=1,
            currency="EUR",
            version=1,
        ),
    )

    async def stage() -> str:
        url = pair.postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1)
        engine = create_async_engine(
            url, connect_args={"server_settings": {"search_path": pair.orders[0].schema}}
        )
        try:
            async with engine.begin() as connection:
                staged = await publisher.publish(connection, event, key=key)
            return staged.id
        finally:
            await engine.dispose()

    return asyncio.run(stage())


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("kind", [pytest.param("rabbit", id="rabbitmq"), pytest.param("nats")])
def test_a_poison_event_is_dead_lettered_after_its_attempts_while_others_flow(
    kind: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    attempts = 3
    pair = h.make_pair(
        tmp_path,
        postgres_url=postgres_url,
        redis_url=redis_url,
        kind=kind,
        broker_url=_broker_url(kind),
        dead_letter_attempts=str(attempts),
    )
    try:
        pair.projections.start()
        pair.orders[0].start()
        base = pair.orders[0].base_url
        bearer = h.token(base)
        poison = _stage_poison(pair, "poison-order")
        created = []
        for n in range(10):
            response = httpx.post(
                f"{base}/orders",
                json=h.new_order(n),
                headers={"Authorization": f"Bearer {bearer}"},
                timeout=60,
            )
            assert response.status_code == 201, response.text
            created.append(response.json()["id"])
        h.wait_for(
            lambda: {r["order_id"] for r in h.projection_log(pair)} >= set(created),
            "the other orders projected",
            120,
        )
        schema = pair.projections.schema
        sql = (
            "SELECT message_id, reason, error, attempts, partitionkey "  # noqa: S608
            f'FROM "{schema}".saasfw_messaging_dead_letters'
        )
        dead = h.wait_for(lambda: h.query(postgres_url, sql), "the dead letter", 180)
        log = h.projection_log(pair)
    finally:
        pair.cleanup()
    assert len(dead) == 1, dead
    assert dead[0]["message_id"] == poison
    assert dead[0]["partitionkey"] == "poison-order"
    assert dead[0]["attempts"] == attempts
    assert "TenantMismatch" in dead[0]["error"], dead[0]
    assert "poison-order" not in {r["order_id"] for r in log}


def _metric(base_url: str, name: str) -> float | None:
    text = httpx.get(f"{base_url}/metrics", timeout=30).text
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("kind", [pytest.param("rabbit", id="rabbitmq"), pytest.param("nats")])
def test_with_the_broker_down_orders_are_taken_and_delivered_after_recovery(
    kind: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    _broker_url(kind)  # the brokers are there; this test runs its own node to stop it
    if kind == "nats":
        if h.NATS_SERVER is None:
            pytest.skip("nats-server is not installed")
        private: Any = h.PrivateNats(tmp_path / "jetstream")
    else:
        if h.RABBITMQ_SERVER is None:
            pytest.skip("rabbitmq-server is not installed")
        private = h.PrivateRabbit()
    private.start()
    pair = h.make_pair(
        tmp_path, postgres_url=postgres_url, redis_url=redis_url, kind=kind, broker_url=private.url
    )
    depth = "saasfw_messaging_outbox_depth"
    try:
        pair.projections.start()
        orders = pair.orders[0]
        orders.start()
        bearer = h.token(orders.base_url)
        headers = {"Authorization": f"Bearer {bearer}"}
        private.kill()
        statuses = [
            httpx.post(
                f"{orders.base_url}/orders", json=h.new_order(n), headers=headers, timeout=60
            ).status_code
            for n in range(20)
        ]

        def degraded() -> Any:
            ready = httpx.get(f"{orders.base_url}/health/ready", timeout=30)
            checks = ready.json()["checks"]
            down = {
                name: checks[name]["status"]
                for name in ("broker", "outbox_relay")
                if checks[name]["status"] != "UP"
            }
            return (ready, down) if down else None

        ready, down = h.wait_for(degraded, "the broker or relay reported down", 120)
        risen = h.wait_for(
            # Sampled every 10 s; a loaded machine (the whole suite on two cores) is slow.
            lambda: (_metric(orders.base_url, depth) or 0) >= 20,
            "the depth metric",
            300,
        )
        assert h.outbox_depth(pair) >= 20
        private.start()
        h.wait_for(lambda: _metric(orders.base_url, depth) == 0, "the outbox drained", 300)
        h.wait_for(lambda: len(h.projection_log(pair)) >= 20, "the projection", 300)

        def recovered() -> Any:
            ready = httpx.get(f"{orders.base_url}/health/ready", timeout=30)
            checks = ready.json()["checks"]
            up = all(checks[n]["status"] == "UP" for n in ("broker", "outbox_relay"))
            return ready if up else None

        back = h.wait_for(recovered, "the broker and relay reported up", 120)
    finally:
        pair.cleanup()
        getattr(private, "remove", private.kill)()
    print(f"broker={kind} down={down}")  # which check saw the outage, for the report
    assert statuses == [201] * 20
    assert ready.status_code == 200  # still ready: no replica leaves rotation for the broker
    assert set(down.values()) == {"DEGRADED"}, ready.json()
    assert risen
    assert back.status_code == 200
