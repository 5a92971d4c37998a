"""Three orders-service processes on one database: every token guarantee holds across them.

The fleet runs on PostgreSQL with Redis, and again on PostgreSQL alone (revocation in the
database, kept current by LISTEN/NOTIFY). A logout or a detected refresh-token reuse on one
instance is refused on the others, the login limit is exact across the three (counted in
Redis, or without it in the service's PostgreSQL database), and after all three restart
every revoked token stays revoked.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import ServerProcess, ServerStarter

PASSWORD = {"alice": "alice-demo-password"}
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

LOGIN_LIMIT = 40


def _fleet_env(
    data_dir: Path, schema: str, postgres_url: str, redis_url: str | None, prefix: str
) -> dict[str, str]:
    env = {
        "SAASFW_ENV": "test",
        "SAASFW_DATA_DIR": str(data_dir),
        "SAASFW_CONFIG_DIR": str(ROOT / "examples" / "orders_service" / "config"),
        "SAASFW_DB__URL": postgres_url,
        "SAASFW_DB__SCHEMA_NAME": schema,
        # One signing key for the fleet, as a Kubernetes Secret would give every pod.
        "SAASFW_SECURITY__JWT__HMAC_SECRET": "fleet-" + "k" * 20 + "9f2c7a1e5b3d",
        "SAASFW_LIMITS__LOGIN": f"{LOGIN_LIMIT}/hour",
        "SAASFW_SECURITY__RATE_LIMIT__STRATEGY": "moving-window",
        "SAASFW_K8S__LIFECYCLE__DRAIN_TIMEOUT_SECONDS": "2",
    }
    if redis_url is not None:
        env["SAASFW_REDIS_URL"] = redis_url
        env["SAASFW_REDIS_PREFIX"] = prefix
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _drop_schema(postgres_url: str, schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(postgres_url)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


def _delete_prefix(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class Fleet:
    """Three instances sharing one schema (and Redis, when given)."""

    def __init__(
        self, starter: ServerStarter, tmp_path: Path, postgres_url: str, redis_url: str | None
    ) -> None:
        self.starter = starter
        self.tmp_path = tmp_path
        self.postgres_url = postgres_url
        self.redis_url = redis_url
        suffix = uuid.uuid4().hex[:10]
        self.schema = f"orders_service_fleet_{suffix}"
        self.prefix = f"fleet-{suffix}"
        self.servers: list[ServerProcess] = []
        self.generation = 0

    def start(self) -> None:
        self.generation += 1
        self.servers = []
        for index in range(3):
            data_dir = self.tmp_path / f"instance{index}"
            env = _fleet_env(data_dir, self.schema, self.postgres_url, self.redis_url, self.prefix)
            port = _free_port()
            env["SAASFW_HTTP__PORT"] = str(port)
            command = [str(Path(sys.prefix) / "bin" / "orders-service")]
            name = f"instance{index}-{self.generation}"
            self.servers.append(self.starter(command, env=env, port=port, name=name))

    def stop(self) -> None:
        for server in self.servers:
            if server.process.poll() is None:
                server.terminate()

    def url(self, index: int) -> str:
        return self.servers[index].base_url

    def cleanup(self) -> None:
        self.stop()
        _drop_schema(self.postgres_url, self.schema)
        if self.redis_url is not None:
            _delete_prefix(self.redis_url, self.prefix)


@pytest.fixture(params=["postgres+redis", "postgres"])
def fleet(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_url: str,
    server_starter: ServerStarter,
) -> Iterator[Fleet]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "postgres+redis" else None
    made = Fleet(server_starter, tmp_path, postgres_url, redis_url)
    try:
        made.start()
        yield made
    finally:
        made.cleanup()


def _login(base: str, user: str = "alice") -> dict[str, str]:
    response = httpx.post(
        f"{base}/auth/login", json={"username": user, "password": PASSWORD[user]}, timeout=30
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def _orders(base: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{base}/orders", headers=headers, timeout=30).status_code


def _refresh(base: str, token: str) -> httpx.Response:
    return httpx.post(f"{base}/auth/refresh", json={"refresh_token": token}, timeout=30)


def _refused_within(check: Callable[[], bool], limit: float = 10.0) -> float:
    """Seconds until ``check()`` is true (polled); the test fails past ``limit``."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    pytest.fail(f"not refused within {limit}s")


def test_logout_reuse_limits_and_restarts_hold_across_three_instances(fleet: Fleet) -> None:
    a, b, c = fleet.url(0), fleet.url(1), fleet.url(2)
    calls = 0  # logins and refreshes count against the login limit

    # Logout on A: the access token and its refresh family are refused on B and C.
    pair = _login(a)
    calls += 1
    assert _orders(b, pair["access_token"]) == 200
    logout = httpx.post(
        f"{a}/auth/logout",
        headers={"Authorization": f"Bearer {pair['access_token']}"},
        json={"refresh_token": pair["refresh_token"]},
        timeout=30,
    )
    assert logout.status_code == 204
    delays = [
        _refused_within(lambda base=base: _orders(base, pair["access_token"]) == 401)
        for base in (b, c)
    ]
    print(f"logout refused on the other instances after {max(delays) * 1000:.0f} ms")
    assert _refresh(c, pair["refresh_token"]).status_code == 401
    calls += 1

    # A reused refresh token presented to another instance revokes the family everywhere.
    first = _login(a)
    rotated = _refresh(b, first["refresh_token"])
    calls += 2
    assert rotated.status_code == 200
    assert _refresh(c, first["refresh_token"]).status_code == 401  # the reuse
    calls += 1
    newest = rotated.json()
    _refused_within(lambda: _refresh(a, newest["refresh_token"]).status_code == 401)
    calls += 1
    _refused_within(lambda: _orders(b, newest["access_token"]) == 401)

    # The login limit is one budget for the fleet, in Redis or in PostgreSQL.
    bases = [a, b, c]
    outcomes = []
    for n in range(LOGIN_LIMIT):
        response = httpx.post(
            f"{bases[n % 3]}/auth/login",
            json={"username": "alice", "password": PASSWORD["alice"]},
            timeout=30,
        )
        outcomes.append(response.status_code)
    assert outcomes.count(200) == LOGIN_LIMIT - calls
    assert set(outcomes) == {200, 429}

    # After every instance restarts, the revoked tokens stay revoked.
    fleet.stop()
    fleet.start()
    a, b, c = fleet.url(0), fleet.url(1), fleet.url(2)
    assert _orders(a, pair["access_token"]) == 401
    assert _orders(c, newest["access_token"]) == 401
    # The login budget is spent and survives the restart (429 before the token is looked
    # at): Redis and the PostgreSQL table both outlive the processes.
    assert _refresh(b, newest["refresh_token"]).status_code == 429


def _fleet_state(postgres_url: str, schema: str) -> tuple[set[str], int, list[tuple[str, str]]]:
    """Committed orders, audit events still waiting in the outbox, and the SQL sink's rows."""
    import asyncpg

    async def read() -> tuple[set[str], int, list[tuple[str, str]]]:
        conn = await asyncpg.connect(postgres_url)
        try:
            # The schema is this test's own generated name, not input.
            orders = await conn.fetch(f'SELECT id FROM "{schema}".orders')  # noqa: S608
            waiting = await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".saasfw_audit_outbox'  # noqa: S608
            )
            events = await conn.fetch(
                f'SELECT type, resource_id FROM "{schema}".audit_events'  # noqa: S608
            )
            return (
                {str(r["id"]) for r in orders},
                int(waiting),
                [(r["type"], r["resource_id"]) for r in events],
            )
        finally:
            await conn.close()

    return asyncio.run(read())


def test_audit_after_sigkills_on_three_instances(
    tmp_path: Path, postgres_url: str, redis_url: str, server_starter: ServerStarter
) -> None:
    """Issue 16 acceptance 6: traffic on all three, SIGKILLs and restarts in the middle.

    Each instance's log verifies (a killed process's chain is unterminated, never tampered),
    no log holds an event twice, and every created order has exactly one created event in
    the shared SQL trail (and at least one in the files; an event redelivered by another
    replica's relay after a kill lands in that replica's file).
    """
    import base64
    import json
    import os
    import random
    import signal
    import threading
    from collections import Counter

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from saasfw.audit import verify_log

    kills = int(os.environ.get("SAASFW_TEST_FLEET_KILLS", "3"))
    fleet = Fleet(server_starter, tmp_path, postgres_url, redis_url)
    rng = random.Random()
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()
    try:
        fleet.start()
        token = _login(fleet.url(0))["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        def load() -> None:
            with httpx.Client(timeout=30) as client:
                while not stop.is_set():
                    base = fleet.url(rng.randrange(3))
                    try:
                        response = client.post(
                            f"{base}/orders",
                            json={
                                "customer_email": f"{uuid.uuid4().hex[:10]}@example.com",
                                "sku": "WIDGET-1",
                                "quantity": 1,
                                "unit_price_cents": 100,
                            },
                            headers=headers,
                        )
                    except httpx.TransportError:
                        time.sleep(0.05)
                        continue
                    if response.status_code == 201:
                        with lock:
                            acknowledged.add(response.json()["id"])

        threads = [threading.Thread(target=load, daemon=True) for _ in range(8)]
        for thread in threads:
            thread.start()
        for kill in range(kills):
            before = len(acknowledged)
            deadline = time.monotonic() + 120
            while len(acknowledged) < before + 10 and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, 1.0))
            index = rng.randrange(3)
            victim = fleet.servers[index]
            victim.signal_server(signal.SIGKILL)
            victim.process.wait(timeout=60)
            env = _fleet_env(
                tmp_path / f"instance{index}", fleet.schema, postgres_url, redis_url, fleet.prefix
            )
            port = _free_port()
            env["SAASFW_HTTP__PORT"] = str(port)
            command = [str(Path(sys.prefix) / "bin" / "orders-service")]
            fleet.servers[index] = server_starter(
                command, env=env, port=port, name=f"instance{index}-kill{kill}"
            )
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        deadline = time.monotonic() + 180
        while True:
            committed, waiting, sql_events = _fleet_state(postgres_url, fleet.schema)
            if waiting == 0:
                break
            assert time.monotonic() < deadline, f"{waiting} audit events still undelivered"
            time.sleep(0.2)
        fleet.stop()  # a clean shutdown: every live producer signs its final checkpoint
        committed, waiting, sql_events = _fleet_state(postgres_url, fleet.schema)
    finally:
        stop.set()
        fleet.cleanup()

    assert acknowledged <= committed
    sql_created = Counter(rid for typ, rid in sql_events if typ == "orders.order.created")
    assert set(sql_created) == committed  # none missing, none for an uncommitted order
    assert all(n == 1 for n in sql_created.values()), sql_created.most_common(3)
    in_files: set[str] = set()
    for index in range(3):
        state = tmp_path / f"instance{index}" / "orders_service"
        log = state / "audit" / "audit.jsonl"
        records = [json.loads(line) for line in log.read_text("utf-8").splitlines() if line]
        ids = Counter(r["id"] for r in records)
        assert all(n == 1 for n in ids.values()), (index, ids.most_common(3))
        in_files |= {r["resource"]["id"] for r in records if r["type"] == "orders.order.created"}
        secrets = json.loads((state / "dev-secrets.json").read_text())
        seed = base64.b64decode(secrets["audit_checkpoint_key"])
        checkpoints = state / "audit" / "checkpoints.jsonl"
        # An instance killed before its first checkpoint, and stopped before the next
        # one was due, has none: its chain is still checked, record by record.
        report = verify_log(
            log,
            chain_key=base64.b64decode(secrets["audit_chain_key"]),
            public_key=Ed25519PrivateKey.from_private_bytes(seed).public_key(),
            checkpoints_path=checkpoints if checkpoints.exists() else None,
        )
        assert not report.tampered, (index, report.as_dict())
    assert in_files == committed
    print(f"kills={kills} committed={len(committed)} acknowledged={len(acknowledged)}")
