"""Integration-suite fixtures: real server processes, stopped the way Kubernetes stops them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def find_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """One running server: its base URL, process and captured output file."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text("utf-8", errors="replace")

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the server (the innermost process under any shell or ``uv run``) and wait.

        The wrappers exit with the server's own status, so the return code is the server's.
        """
        if self.process.poll() is None:
            for pid in _leaf_processes(self.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            raise

    def signal_server(self, signum: int) -> None:
        """Send ``signum`` to the server process only."""
        for pid in _leaf_processes(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _leaf_processes(pid: int) -> list[int]:
    children = _children(pid)
    if not children:
        return [pid]
    leaves: list[int] = []
    for child in children:
        leaves.extend(_leaf_processes(child))
    return leaves


def start_server(
    command: list[str],
    *,
    env: Mapping[str, str],
    port: int,
    log_path: Path,
    cwd: Path = ROOT,
    ready_timeout: float = 60.0,
) -> ServerProcess:
    """Run ``command`` in its own process group and wait for ``/health/ready`` to answer 200."""
    # An empty value removes the variable (e.g. VIRTUAL_ENV for a user's shell).
    full_env = {k: v for k, v in {**os.environ, **env}.items() if v != ""}
    log = log_path.open("wb")
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + ready_timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode} before it was ready:\n{server.output()}"
            )
        try:
            response = httpx.get(f"{server.base_url}/health/ready", timeout=2.0)
            if response.status_code == 200:
                return server
            last = f"{response.status_code} {response.text}"
        except httpx.TransportError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    server.terminate()
    raise RuntimeError(f"server not ready after {ready_timeout}s ({last}):\n{server.output()}")


class ServerStarter:
    """Starts servers for one test and terminates any still running at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._started: list[ServerProcess] = []

    def __call__(
        self, command: list[str], *, env: Mapping[str, str], port: int, name: str = "server"
    ) -> ServerProcess:
        server = start_server(command, env=env, port=port, log_path=self._tmp_path / f"{name}.log")
        self._started.append(server)
        return server

    def close(self) -> None:
        for server in self._started:
            if server.process.poll() is None:
                server.terminate()


@pytest.fixture
def server_starter(tmp_path: Path) -> Iterator[ServerStarter]:
    """Start real server processes; whatever is still running is stopped after the test."""
    starter = ServerStarter(tmp_path)
    try:
        yield starter
    finally:
        starter.close()


@pytest.fixture
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    return find_free_port()


# -- the orders example as a real process ---------------------------------------------------


@dataclass
class OrdersService:
    """A running orders-service process and what a test needs to talk to it."""

    server: ServerProcess
    backend: str
    data_dir: Path
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "orders_service"

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=30.0, **kwargs)  # type: ignore[arg-type]


def orders_service_command() -> list[str]:
    """The example's console script from this test run's environment."""
    import sys

    script = Path(sys.prefix) / "bin" / "orders-service"
    return [str(script)]


def orders_service_env(
    backend: str, data_dir: Path, *, postgres_url: str | None, redis_url: str | None
) -> dict[str, str]:
    """Settings of one orders-service process: SQLite by default, PostgreSQL+Redis by two vars."""
    import uuid

    env = {
        "SAASFW_ENV": "test",
        "SAASFW_DATA_DIR": str(data_dir),
        "SAASFW_CONFIG_DIR": str(ROOT / "examples" / "orders_service" / "config"),
        "SAASFW_K8S__LIFECYCLE__DRAIN_TIMEOUT_SECONDS": "15",
        # The suite logs in far more often than a person would; 429 is tested on /api-keys.
        "SAASFW_LIMITS__LOGIN": "6000/minute",
    }
    if backend == "postgres":
        assert postgres_url is not None
        assert redis_url is not None
        suffix = uuid.uuid4().hex[:10]
        env["SAASFW_DB__URL"] = postgres_url
        env["SAASFW_DB__SCHEMA_NAME"] = f"orders_service_it_{suffix}"
        env["SAASFW_REDIS_URL"] = redis_url
        env["SAASFW_REDIS_PREFIX"] = f"it-{suffix}"
    return env


def drop_postgres_schema(postgres_url: str, schema: str) -> None:
    """Remove a test's schema (the test owns it; nobody else uses the name)."""
    import asyncio

    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(postgres_url)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


def delete_redis_prefix(redis_url: str, prefix: str) -> None:
    """Delete the keys a test wrote under its own prefix (never FLUSHALL)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _service_urls(request: pytest.FixtureRequest, backend: str) -> tuple[str | None, str | None]:
    if backend != "postgres":
        return None, None
    return request.getfixturevalue("postgres_url"), request.getfixturevalue("redis_url")


@contextlib.contextmanager
def running_orders_service(
    request: pytest.FixtureRequest, backend: str, data_dir: Path, **extra_env: str
) -> Iterator[OrdersService]:
    """Start the example on ``backend``; stop it and remove what it created afterwards."""
    postgres_url, redis_url = _service_urls(request, backend)
    env = orders_service_env(backend, data_dir, postgres_url=postgres_url, redis_url=redis_url)
    env.update(extra_env)
    port = find_free_port()
    env["SAASFW_HTTP__PORT"] = str(port)
    server = start_server(
        orders_service_command(), env=env, port=port, log_path=data_dir / "server.log"
    )
    try:
        yield OrdersService(server, backend, data_dir, env)
    finally:
        if server.process.poll() is None:
            server.terminate()
        if postgres_url is not None:
            drop_postgres_schema(postgres_url, env["SAASFW_DB__SCHEMA_NAME"])
        if redis_url is not None:
            delete_redis_prefix(redis_url, env["SAASFW_REDIS_PREFIX"])


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres+redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
]


@pytest.fixture(scope="module", params=BACKENDS)
def orders(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrdersService]:
    """One orders-service process per test module and backend."""
    backend: str = request.param
    with running_orders_service(request, backend, tmp_path_factory.mktemp(backend)) as service:
        yield service


@pytest.fixture(params=BACKENDS)
def fresh_orders(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OrdersService]:
    """An orders-service process of this test alone (the test may stop it)."""
    with running_orders_service(request, request.param, tmp_path) as service:
        yield service


# -- the README's run command, started once for the session ---------------------------------


def readme_run_command() -> str:
    """The first command of the root README's Quickstart (what a new user runs)."""
    import sys

    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_commands.py"), "run"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def user_shell_environment() -> dict[str, str]:
    """The environment of a user's shell: without this test run's virtual environment.

    ``python3`` must be the user's interpreter (the one the README's command installs uv
    into), not the test venv's. An empty value removes the variable.
    """
    import sys

    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin
    )
    return {"PATH": path, "VIRTUAL_ENV": ""}


@pytest.fixture(scope="session")
def readme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The orders example started by the README's run command verbatim, on a free port.

    ``SAASFW_HTTP__PORT`` (or ``PORT``) moves it off 8000 and ``SAASFW_DATA_DIR`` keeps its
    files in a temporary directory; both are documented in the example's README. Stopped
    with SIGTERM at the end of the session, where it must exit 0.
    """
    data = tmp_path_factory.mktemp("readme")
    port = find_free_port()
    clean = {k: "" for k in os.environ if k.startswith("SAASFW_")}
    server = start_server(
        ["bash", "-c", readme_run_command()],
        env={
            **clean,
            **user_shell_environment(),
            "SAASFW_HTTP__PORT": str(port),
            "SAASFW_DATA_DIR": str(data / "var"),
        },
        port=port,
        log_path=data / "server.log",
    )
    try:
        yield server
    finally:
        if server.process.poll() is None:
            code = server.terminate()
            assert code == 0, server.output()
