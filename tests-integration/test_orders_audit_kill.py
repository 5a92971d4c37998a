"""Issue 17 acceptance: SIGKILL the orders service under load; no order loses its audit event.

A real ``orders-service`` process on PostgreSQL (a private schema) takes concurrent order
creations (8 in flight) and is killed with SIGKILL at random moments, then restarted on
the same data directory. Once the relay caught up: every committed order has exactly one
``orders.order.created`` event in the file log and in the SQL sink, no event exists for
an order that was not committed, no event id appears twice, and the chain verifies.

The first life is killed at a chosen moment: the relay's failpoint SIGKILLs the process
after a batch reached the sinks and before its outbox rows are deleted, so the next start
redelivers events the sinks already hold (they must not be recorded twice).

``SAASFW_TEST_KILLS`` sets the number of random kills (default 5).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import verify_log

PASSWORD = "alice-demo-password"


def _conftest() -> Any:
    """This directory's conftest module (pytest's importlib mode keeps it off sys.path)."""
    path = str(Path(__file__).with_name("conftest.py"))
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == path:
            return module
    raise LookupError("tests-integration/conftest.py is not loaded")


IN_FLIGHT = 8


def _token(base_url: str) -> str:
    response = httpx.post(
        f"{base_url}/auth/login", json={"username": "alice", "password": PASSWORD}, timeout=60
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


class Load:
    """IN_FLIGHT threads creating orders until stopped; what each answer proved."""

    def __init__(self) -> None:
        self.base_url = ""
        self.token = ""
        self.acknowledged: set[str] = set()  # 201: committed for sure
        self.refused = 0
        self.lost_answers = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(IN_FLIGHT)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                base, token = self.base_url, self.token
                try:
                    response = client.post(
                        f"{base}/orders",
                        json={
                            "customer_email": f"{uuid.uuid4().hex[:12]}@example.com",
                            "sku": "WIDGET-1",
                            "quantity": 1,
                            "unit_price_cents": 100,
                        },
                        headers={"Authorization": f"Bearer {token}"},
                    )
                except httpx.TransportError:
                    with self.lock:
                        self.lost_answers += 1
                    time.sleep(0.05)
                    continue
                with self.lock:
                    if response.status_code == 201:
                        self.acknowledged.add(response.json()["id"])
                    else:
                        self.refused += 1


async def _database_state(url: str, schema: str) -> tuple[set[str], int]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        # The schema is this test's own generated name, not input.
        rows = await conn.fetch(f'SELECT id FROM "{schema}".orders')  # noqa: S608
        waiting = await conn.fetchval(
            f'SELECT count(*) FROM "{schema}".saasfw_audit_outbox'  # noqa: S608
        )
        return {str(r["id"]) for r in rows}, int(waiting)
    finally:
        await conn.close()


async def _sql_events(url: str, schema: str) -> list[tuple[str, str, str]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            f'SELECT id, type, resource_id FROM "{schema}".audit_events'  # noqa: S608
        )
        return [(r["id"], r["type"], r["resource_id"]) for r in rows]
    finally:
        await conn.close()


def _kill_between_sink_write_and_outbox_delete(
    ct: Any, env: dict[str, str], port: int, tmp_path: Path, load: Load
) -> None:
    """One order, then the relay's failpoint kills the process before the outbox delete."""
    server = ct.start_server(
        ct.orders_service_command(),
        env={**env, "SAASFW_FAILPOINT": "outbox.before_delete"},
        port=port,
        log_path=tmp_path / "server-failpoint.log",
        ready_timeout=120,
    )
    try:
        response = httpx.post(
            f"{server.base_url}/orders",
            json={
                "customer_email": "failpoint@example.com",
                "sku": "WIDGET-1",
                "quantity": 1,
                "unit_price_cents": 100,
            },
            headers={"Authorization": f"Bearer {_token(server.base_url)}"},
            timeout=60,
        )
        assert response.status_code == 201, response.text
        load.acknowledged.add(response.json()["id"])
        server.process.wait(timeout=120)  # the failpoint kills it once the batch is written
        assert "failpoint outbox.before_delete" in server.output()
    finally:
        if server.process.poll() is None:
            server.terminate()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_sigkill_under_load_loses_no_audit_event_and_records_none_twice(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    kills = int(os.environ.get("SAASFW_TEST_KILLS", "5"))
    ct = _conftest()
    env = ct.orders_service_env(
        "postgres", tmp_path, postgres_url=postgres_url, redis_url=redis_url
    )
    port = ct.find_free_port()
    env["SAASFW_HTTP__PORT"] = str(port)
    schema = env["SAASFW_DB__SCHEMA_NAME"]
    rng = random.Random()
    load = Load()
    server: Any = None
    try:
        _kill_between_sink_write_and_outbox_delete(ct, env, port, tmp_path, load)
        for life in range(kills + 1):
            server = ct.start_server(
                ct.orders_service_command(),
                env=env,
                port=port,
                log_path=tmp_path / f"server-{life}.log",
                ready_timeout=120,
            )
            load.base_url, load.token = server.base_url, _token(server.base_url)
            if life == 0:
                for thread in load.threads:
                    thread.start()
            if life == kills:
                break
            before = len(load.acknowledged)
            deadline = time.monotonic() + 120
            # Some orders in this life first, then a kill at a random moment.
            while len(load.acknowledged) < before + 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.5))
            server.signal_server(signal.SIGKILL)
            server.process.wait(timeout=60)
        load.stop.set()
        for thread in load.threads:
            thread.join(timeout=60)
        assert server is not None
        deadline = time.monotonic() + 180
        while True:
            committed, waiting = asyncio.run(_database_state(postgres_url, schema))
            if waiting == 0:
                break
            assert time.monotonic() < deadline, f"{waiting} audit events still undelivered"
            time.sleep(0.2)
        assert server.terminate(timeout=60) == 0
        sql_events = asyncio.run(_sql_events(postgres_url, schema))
    finally:
        load.stop.set()
        if server is not None and server.process.poll() is None:
            server.terminate()
        ct.drop_postgres_schema(postgres_url, schema)
        ct.delete_redis_prefix(redis_url, env["SAASFW_REDIS_PREFIX"])

    state = tmp_path / "orders_service"
    records: list[dict[str, Any]] = [
        json.loads(line)
        for line in (state / "audit" / "audit.jsonl").read_text("utf-8").splitlines()
        if line
    ]
    created = [r for r in records if r["type"] == "orders.order.created"]
    created_for = Counter(r["resource"]["id"] for r in created)
    sql_created = Counter(rid for _, typ, rid in sql_events if typ == "orders.order.created")
    print(  # the figures of the run, for the report
        f"kills={kills} committed={len(committed)} acknowledged={len(load.acknowledged)} "
        f"lost_answers={load.lost_answers} refused={load.refused} records={len(records)} "
        f"sql_created={len(sql_created)}"
    )
    assert load.acknowledged <= committed  # every 201 is a committed order
    assert len(committed) >= 5 * kills
    assert set(created_for) == committed  # no event for an order that was not committed
    assert all(n == 1 for n in created_for.values()), created_for.most_common(3)
    ids = Counter(r["id"] for r in records)
    assert all(n == 1 for n in ids.values()), ids.most_common(3)
    # A kill between the file's write and the SQL sink's leaves the row staged: the
    # redelivery is resent to the SQL sink alone.
    assert set(sql_created) == committed
    assert all(n == 1 for n in sql_created.values())
    secrets = json.loads((state / "dev-secrets.json").read_text())
    seed = base64.b64decode(secrets["audit_checkpoint_key"])
    report = verify_log(
        state / "audit" / "audit.jsonl",
        chain_key=base64.b64decode(secrets["audit_chain_key"]),
        public_key=Ed25519PrivateKey.from_private_bytes(seed).public_key(),
        checkpoints_path=state / "audit" / "checkpoints.jsonl",
    )
    # Every process had its own producer id and chain. Each killed one ends without a final
    # checkpoint (reported as unterminated, not as tampering); the last one shut down cleanly.
    assert not report.tampered, report.as_dict()
    unterminated = {f.producer for f in report.findings if f.kind == "unterminated"}
    assert len(unterminated) == kills + 1, report.as_dict()
