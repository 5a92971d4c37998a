"""Issue 19 acceptance: the orders events reach the projection once each, whatever is killed.

Real processes: ``orders-service`` publishes through its outbox, ``projections-service``
consumes into each customer's totals, on RabbitMQ and on NATS JetStream (private
``rabbitmq-server`` and ``nats-server`` nodes, so the test can restart them). Orders are
created over HTTP while producer and consumer are SIGKILLed at random moments, and the
broker is SIGKILLed and restarted once in the middle; at the end every committed
order was applied to the projection exactly once, and the actor and correlation id of the
creating request reached the consumer's log lines, projection log and audit records.

``SAASFW_TEST_MESSAGING_ORDERS`` (default 200) and ``SAASFW_TEST_MESSAGING_KILLS``
(default 4) size the run; the acceptance run is 1000 and 10.
"""

from __future__ import annotations

import importlib.util
import os
import random
import sys
import time
from collections import Counter
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

BROKERS = [
    pytest.param("rabbit", id="rabbitmq"),
    pytest.param("nats", id="nats"),
]


def _broker(kind: str, tmp_path: Path) -> tuple[str, Any]:
    """A private broker of ``kind`` (restartable) and its URL.

    ``SAASFW_TEST_RABBITMQ_URL`` / ``SAASFW_TEST_NATS_URL`` say the brokers are there; the
    test runs its own node of the same server (``rabbitmq-server``, ``nats-server``) so
    it can kill and restart it. Without ``rabbitmq-server`` on the PATH the RabbitMQ runs
    use the shared node and skip the restart.
    """
    if kind == "rabbit":
        url = os.environ.get("SAASFW_TEST_RABBITMQ_URL", "").strip()
        if not url:
            _missing("SAASFW_TEST_RABBITMQ_URL is not set")
        if h.RABBITMQ_SERVER is None:
            return url, None  # the shared node: no broker restart in this run
        rabbit = h.PrivateRabbit()
        rabbit.start()
        return rabbit.url, rabbit
    if not os.environ.get("SAASFW_TEST_NATS_URL", "").strip():
        _missing("SAASFW_TEST_NATS_URL is not set")
    if h.NATS_SERVER is None:
        _missing("nats-server is not installed")
    private = h.PrivateNats(tmp_path / "jetstream")
    private.start()
    return private.url, private


def _missing(reason: str) -> None:
    if os.environ.get("SAASFW_REQUIRE_SERVICES", "").strip() in {"1", "true", "yes"}:
        pytest.fail(f"SAASFW_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def _kill_plan(rng: random.Random, orders: int, kills: int) -> list[tuple[int, str]]:
    """(acknowledged orders, victim) pairs: producer and consumer in turn, random moments."""
    moments = sorted(rng.randint(orders // 10, orders * 9 // 10) for _ in range(kills))
    victims = ["orders", "projections"] * kills
    rng.shuffle(victims)
    return list(zip(moments, victims[:kills], strict=True))


def _applied_created(pair: Any) -> Counter[str]:
    rows = h.projection_log(pair)
    return Counter(
        r["order_id"]
        for r in rows
        if r["event_type"] == "orders.order.created.v1" and r["outcome"] == "applied"
    )


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("kind", BROKERS)
def test_every_order_is_projected_once_through_kills(
    kind: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    total = int(os.environ.get("SAASFW_TEST_MESSAGING_ORDERS", "200"))
    kills = int(os.environ.get("SAASFW_TEST_MESSAGING_KILLS", "4"))
    broker_url, private = _broker(kind, tmp_path)
    pair = h.make_pair(
        tmp_path, postgres_url=postgres_url, redis_url=redis_url, kind=kind, broker_url=broker_url
    )
    orders, projections = pair.orders[0], pair.projections
    rng = random.Random()
    plan = _kill_plan(rng, total, kills)
    broker_restart_at = total // 2 if private is not None else None
    started, restarts = time.monotonic(), 0
    try:
        projections.start()
        orders.start()
        load = h.Load(orders.base_url, h.token(orders.base_url), total)
        load.ceiling = 0
        load.start()
        for moment, victim in plan:
            # The load runs a little past the moment and waits there until the killed
            # service is back, so every kill lands while requests and events are in flight.
            load.ceiling = moment + 50
            h.wait_for(lambda m=moment: len(load.acknowledged) >= m, f"{moment} orders", 600, 0.02)
            if broker_restart_at is not None and len(load.acknowledged) >= broker_restart_at:
                private.kill()
                time.sleep(rng.uniform(0.5, 3.0))
                private.start()
                broker_restart_at = None
                restarts += 1
            time.sleep(rng.uniform(0.0, 0.2))
            service = orders if victim == "orders" else projections
            service.kill()
            service.start()
        load.ceiling = total
        if broker_restart_at is not None:
            h.wait_for(lambda: len(load.acknowledged) >= broker_restart_at, "half the orders", 600)
            private.kill()
            time.sleep(1.0)
            private.start()
            restarts += 1
        h.wait_for(load.done, f"{total} acknowledged orders", 900, 0.1)
        load.join()
        committed = h.committed_orders(pair)
        h.wait_for(
            lambda: set(_applied_created(pair)) >= committed, "every order projected", 600, 1.0
        )
        time.sleep(5)  # a duplicate arriving late would show now
        applied = _applied_created(pair)
        rows = h.projection_log(pair)
        elapsed = time.monotonic() - started
    finally:
        pair.cleanup()
        if private is not None:
            getattr(private, "remove", private.kill)()
    print(  # the figures of the run, for the report
        f"broker={kind} orders_target={total} kills={kills} broker_restarts={restarts} "
        f"plan={plan} "
        f"committed={len(committed)} acknowledged={len(load.acknowledged)} "
        f"lost_answers={load.lost_answers} refused={load.refused} "
        f"applied={sum(applied.values())} log_rows={len(rows)} elapsed={elapsed:.0f}s"
    )
    assert load.acknowledged <= committed  # every 201 was committed
    assert set(applied) == committed  # no order lost, none invented
    assert all(n == 1 for n in applied.values()), applied.most_common(3)  # none twice
    event_ids = Counter(r["event_id"] for r in rows)
    assert all(n == 1 for n in event_ids.values()), event_ids.most_common(3)
    assert {r["actor"] for r in rows} == {"alice"}
    assert all(r["correlation_id"] for r in rows)
    assert restarts == (1 if private is not None else 0)


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("kind", BROKERS)
def test_actor_and_correlation_id_reach_the_consumer_logs_and_audit(
    kind: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    broker_url, private = _broker(kind, tmp_path)
    pair = h.make_pair(
        tmp_path, postgres_url=postgres_url, redis_url=redis_url, kind=kind, broker_url=broker_url
    )
    orders, projections = pair.orders[0], pair.projections
    correlation = f"it-corr-{os.urandom(6).hex()}"
    try:
        projections.start()
        orders.start()
        bearer = h.token(orders.base_url)
        created = httpx.post(
            f"{orders.base_url}/orders",
            json=h.new_order(1),
            headers={"Authorization": f"Bearer {bearer}", "X-Request-ID": correlation},
            timeout=60,
        )
        assert created.status_code == 201, created.text
        order_id = created.json()["id"]
        h.wait_for(lambda: _applied_created(pair)[order_id] == 1, "the projection", 120)
        schema = projections.schema
        audit = h.wait_for(
            lambda: h.query(
                postgres_url,
                "SELECT actor_id, tenant, correlation_id, resource_id "  # noqa: S608
                f'FROM "{schema}".audit_events '
                "WHERE type = 'projections.customer_totals.updated'",
            ),
            "the projection's audit record",
            120,
        )
        totals = httpx.get(
            f"{projections.base_url}/customer-totals",
            headers={"Authorization": f"Bearer {bearer}"},
            timeout=60,
        )
        unauthenticated = httpx.get(f"{projections.base_url}/customer-totals", timeout=60)
        output = projections.output()
    finally:
        pair.cleanup()
        if private is not None:
            getattr(private, "remove", private.kill)()
    assert audit == [
        {
            "actor_id": "alice",
            "tenant": "acme",
            "correlation_id": correlation,
            "resource_id": order_id,
        }
    ]
    line = next(x for x in output.splitlines() if order_id in x and "projected" in x)
    assert correlation in line
    assert "alice" in line
    assert totals.status_code == 200, totals.text
    body = totals.json()["items"]
    assert body == [
        {
            "customer_email": h.new_order(1)["customer_email"],
            "currency": "EUR",
            "order_count": 1,
            "total_cents": 200,
        }
    ]
    assert unauthenticated.status_code == 401
