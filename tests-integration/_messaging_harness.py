"""The two example services as real processes on a real broker, for the messaging tests.

orders-service publishes its order events through its outbox; projections-service consumes
them into each customer's totals. Each test gets its own PostgreSQL schemas, its own broker
destination (RabbitMQ exchange, or NATS subject prefix and stream) and its own queue, so
tests and engineers sharing the brokers never see each other's events. A test that stops
the broker runs a private nats-server on its own port (:class:`PrivateNats`).

Loaded by path from the test modules (pytest's importlib mode keeps this directory off
``sys.path``); not collected itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "alice-demo-password"
KEY_ID = "it"
NATS_SERVER = shutil.which("nats-server")


def conftest() -> Any:
    """This directory's conftest module."""
    path = str(Path(__file__).with_name("conftest.py"))
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == path:
            return module
    raise LookupError("tests-integration/conftest.py is not loaded")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateNats:
    """One nats-server with JetStream of this test alone, restartable on its port and store."""

    def __init__(self, store: Path) -> None:
        self.port = free_port()
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


RABBITMQ_SERVER = shutil.which("rabbitmq-server")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class PrivateRabbit:
    """One RabbitMQ node of this test alone (own node name, ports and data), restartable.

    Boots in seconds with no plugins; the machine's shared node is never touched (its
    configuration file is replaced by one naming this node's listener).
    """

    def __init__(self) -> None:
        self.port, self.dist_port = free_port(), free_port()
        # rabbitmq-server drops to the rabbitmq user: its directory must be reachable by
        # that user, which pytest's private temporary tree is not.
        base = self.base = Path(tempfile.mkdtemp(prefix="saasfw-it-rabbitmq-"))
        base.chmod(0o777)
        self.process: subprocess.Popen[bytes] | None = None
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        (base / "conf.d").mkdir()
        for path in base.iterdir():
            path.chmod(0o777 if path.is_dir() else 0o644)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        b = self.base
        return {
            **os.environ,
            "HOME": str(b),
            "RABBITMQ_NODENAME": f"saasfw-it-{self.port}@localhost",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(b / "conf.d"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_PID_FILE": str(b / "pid"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(b / "feature_flags"),
            "RABBITMQ_PLUGINS_EXPAND_DIR": str(b / "expand"),
            "RABBITMQ_QUORUM_DIR": str(b / "quorum"),
            "RABBITMQ_STREAM_DIR": str(b / "stream"),
        }

    def start(self) -> None:
        assert RABBITMQ_SERVER is not None
        assert not _listening(self.port), "the previous node still listens"
        with (self.base / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [RABBITMQ_SERVER],
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                assert self.process.poll() is None, (self.base / "server.log").read_text()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _node_pids(self) -> list[int]:
        """The node's Erlang VM: it runs in a session of its own (the wrapper drops to the
        rabbitmq user), so it is found by its node name, not by process group."""
        name = f"RABBITMQ_NODENAME=saasfw-it-{self.port}@localhost".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if name in (entry / "environ").read_bytes().split(b"\0"):
                        found.append(int(entry.name))
        return found

    def kill(self) -> None:
        """SIGKILL the node (no clean shutdown) and wait until its port is closed."""
        for pid in self._node_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=60)
            self.process = None
        deadline = time.monotonic() + 60
        while self._node_pids() or _listening(self.port):
            assert time.monotonic() < deadline, f"RabbitMQ node on {self.port} did not stop"
            time.sleep(0.2)

    def remove(self) -> None:
        """Kill the node and delete its data."""
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Service:
    """One example service: its command and environment, restartable on the same port."""

    name: str
    command: list[str]
    env: dict[str, str]
    logs: Path
    port: int = field(default_factory=free_port)
    server: Any = None
    lives: int = 0

    def __post_init__(self) -> None:
        self.env["SAASFW_HTTP__PORT"] = str(self.port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def schema(self) -> str:
        return self.env["SAASFW_DB__SCHEMA_NAME"]

    def start(self) -> None:
        self.server = conftest().start_server(
            self.command,
            env=self.env,
            port=self.port,
            log_path=self.logs / f"{self.name}-{self.lives}.log",
            ready_timeout=180,
        )
        self.lives += 1

    def kill(self) -> None:
        """SIGKILL: no drain, no shutdown hook."""
        self.server.signal_server(signal.SIGKILL)
        self.server.process.wait(timeout=60)

    def stop(self) -> None:
        if self.server is not None and self.server.process.poll() is None:
            self.server.terminate(timeout=60)

    def output(self) -> str:
        return "".join(
            (self.logs / f"{self.name}-{n}.log").read_text("utf-8", errors="replace")
            for n in range(self.lives)
        )


@dataclass
class Pair:
    """orders-service (one or more replicas on one database) and projections-service."""

    orders: list[Service]
    projections: Service
    postgres_url: str
    redis_url: str
    destination: str
    queue: str

    def stop(self) -> None:
        for service in [*self.orders, self.projections]:
            service.stop()

    def cleanup(self) -> None:
        self.stop()
        ct = conftest()
        ct.drop_postgres_schema(self.postgres_url, self.orders[0].schema)
        ct.drop_postgres_schema(self.postgres_url, self.projections.schema)
        ct.delete_redis_prefix(self.redis_url, self.orders[0].env["SAASFW_REDIS_PREFIX"])


def make_pair(
    tmp_path: Path,
    *,
    postgres_url: str,
    redis_url: str,
    kind: str,
    broker_url: str,
    replicas: int = 1,
    **messaging: str,
) -> Pair:
    """Both services' settings (not started): fresh schemas, destination, queue and keys."""
    ct = conftest()
    suffix = uuid.uuid4().hex[:10]
    destination, queue = f"it.{suffix}", f"it-projections-{suffix}"
    jwt_secret = base64.b64encode(secrets.token_bytes(32)).decode()
    signing_key = base64.b64encode(secrets.token_bytes(32)).decode()
    broker = {
        "SAASFW_MESSAGING__KIND": kind,
        "SAASFW_MESSAGING__BROKER_URL": broker_url,
        "SAASFW_MESSAGING__DESTINATION": destination,
        "SAASFW_MESSAGING__RETRY_BACKOFF": "0.2",
        "SAASFW_MESSAGING__RETRY_MAX_BACKOFF": "2",
        "SAASFW_MESSAGING__RELAY__POLL_INTERVAL": "0.2",
        "SAASFW_MESSAGING__RELAY__MAX_BACKOFF": "2",
        "SAASFW_MESSAGING__RELAY__LEASE_SECONDS": "5",
        "SAASFW_SECURITY__JWT__HMAC_SECRET": jwt_secret,
        **{f"SAASFW_MESSAGING__{k.upper()}": v for k, v in messaging.items()},
    }
    orders_env = ct.orders_service_env(
        "postgres", tmp_path / "orders", postgres_url=postgres_url, redis_url=redis_url
    )
    orders_env.update(broker)
    orders_env.update(
        {
            # The replicas of one fleet share its keys (development keys are per data dir).
            "SAASFW_AUDIT__CHAIN_KEY": secrets.token_hex(32),
            "SAASFW_AUDIT__ENCRYPTION__KEYS__K1": secrets.token_hex(32),
            "SAASFW_AUDIT__ENCRYPTION__ACTIVE_KEY_ID": "k1",
            "SAASFW_AUDIT__ENCRYPTION__KEK_KEYS__KEK1": secrets.token_hex(32),
            "SAASFW_AUDIT__ENCRYPTION__ACTIVE_KEK_ID": "kek1",
            "SAASFW_COMPONENTS__MESSAGING": "true",
            "SAASFW_MESSAGING__SIGNING_KEY_ID": KEY_ID,
            "SAASFW_MESSAGING__SIGNING_KEY": signing_key,
        }
    )
    bin_dir = Path(sys.prefix) / "bin"
    orders = [
        Service(
            f"orders{n}",
            [str(bin_dir / "orders-service")],
            {
                **orders_env,
                "SAASFW_DATA_DIR": str(tmp_path / f"orders{n}"),
                "SAASFW_AUDIT__PRODUCER_ID": f"orders-service-{n}",
            },
            tmp_path,
        )
        for n in range(replicas)
    ]
    projections_env = {
        "SAASFW_ENV": "test",
        "SAASFW_DATA_DIR": str(tmp_path / "projections"),
        "SAASFW_CONFIG_DIR": str(ROOT / "examples" / "projections_service" / "config"),
        "SAASFW_K8S__LIFECYCLE__DRAIN_TIMEOUT_SECONDS": "15",
        "SAASFW_DB__URL": postgres_url,
        "SAASFW_DB__SCHEMA_NAME": f"projections_service_it_{suffix}",
        "SAASFW_QUEUE": queue,
        "SAASFW_MESSAGING__VERIFICATION_KEYS": json.dumps(
            {"/services/orders-service": {KEY_ID: signing_key}}
        ),
        **broker,
    }
    projections = Service(
        "projections", [str(bin_dir / "projections-service")], projections_env, tmp_path
    )
    return Pair(orders, projections, postgres_url, redis_url, destination, queue)


def token(base_url: str, user: str = "alice") -> str:
    response = httpx.post(
        f"{base_url}/auth/login",
        json={"username": user, "password": f"{user}-demo-password"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def new_order(n: int) -> dict[str, Any]:
    return {
        "customer_email": f"customer{n % 17}@example.com",
        "sku": "WIDGET-1",
        "quantity": 1 + n % 3,
        "unit_price_cents": 100,
    }


class Load:
    """Threads creating orders until ``target`` were acknowledged (201) or stopped."""

    def __init__(self, base_url: str, bearer: str, target: int, threads: int = 6) -> None:
        self.base_url = base_url
        self.bearer = bearer
        self.target = target
        self.acknowledged: set[str] = set()
        self.lost_answers = 0
        self.refused = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ceiling = target  # threads wait once this many orders were acknowledged
        self._next = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def done(self) -> bool:
        with self.lock:
            return len(self.acknowledged) >= self.target

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set() and not self.done():
                if len(self.acknowledged) >= self.ceiling:
                    time.sleep(0.02)  # held until the test's kill is done
                    continue
                with self.lock:
                    self._next += 1
                    n = self._next
                try:
                    response = client.post(
                        f"{self.base_url}/orders",
                        json=new_order(n),
                        headers={
                            "Authorization": f"Bearer {self.bearer}",
                            "X-Request-ID": f"it-load-{n}",
                        },
                    )
                except httpx.TransportError:
                    with self.lock:
                        self.lost_answers += 1
                    time.sleep(0.1)
                    continue
                with self.lock:
                    if response.status_code == 201:
                        self.acknowledged.add(response.json()["id"])
                    else:
                        self.refused += 1
                        time.sleep(0.1)


def query(url: str, sql: str) -> list[dict[str, Any]]:
    """Rows of one statement on the test's PostgreSQL (names are the test's own)."""
    import asyncpg

    async def run() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(url)
        try:
            return [dict(r) for r in await connection.fetch(sql)]
        finally:
            await connection.close()

    return asyncio.run(run())


def committed_orders(pair: Pair) -> set[str]:
    schema = pair.orders[0].schema  # the test's own generated name, not input
    rows = query(pair.postgres_url, f'SELECT id FROM "{schema}".orders')  # noqa: S608
    return {str(r["id"]) for r in rows}


def projection_log(pair: Pair) -> list[dict[str, Any]]:
    schema = pair.projections.schema
    columns = "event_id, event_type, order_id, sequence, outcome, correlation_id, actor"
    sql = f'SELECT {columns} FROM "{schema}".projection_log ORDER BY id'  # noqa: S608
    return query(pair.postgres_url, sql)


def outbox_depth(pair: Pair) -> int:
    schema = pair.orders[0].schema
    table = f'"{schema}".saasfw_messaging_outbox'
    rows = query(pair.postgres_url, f"SELECT count(*) AS n FROM {table}")  # noqa: S608
    return int(rows[0]["n"])


def wait_for(condition: Any, what: str, limit: float = 300.0, every: float = 0.5) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
