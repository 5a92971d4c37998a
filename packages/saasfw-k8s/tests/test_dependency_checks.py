"""Acceptance 3: readiness reports a stopped PostgreSQL or Redis as down within its check
timeout while liveness stays 200. The servers are private (started and stopped here); the
shared ones are never touched except for an UP check."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
import redis.asyncio as aioredis

from saasfw.k8s import HealthCheck, HealthProbeMiddleware, HealthRegistry, Lifecycle

CHECK_TIMEOUT = 1.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the private server exited during startup"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"private server on port {port} did not start")


@dataclass
class PrivateServer:
    """A server process this test owns: it may freeze (SIGSTOP) and stop it."""

    process: subprocess.Popen[bytes]
    port: int

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def private_redis() -> Iterator[PrivateServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is needed for the stopped-Redis acceptance test")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = PrivateServer(process, port)
    try:
        _wait_port(port, process)
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivateServer]:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = bins[-1] if bins else shutil.which("initdb")
    if initdb is None:
        pytest.fail("initdb is needed for the stopped-PostgreSQL acceptance test")
    postgres = str(Path(initdb).with_name("postgres"))
    # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
    user = "postgres" if os.geteuid() == 0 else None
    data = Path(tempfile.mkdtemp(prefix="saasfw-k8s-pg-"))
    if user is not None:
        shutil.chown(data, user=user)
    port = _free_port()
    subprocess.run(
        [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"],
        user=user,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process = subprocess.Popen(
        [
            *(postgres, "-D", str(data), "-p", str(port), "-k", str(data)),
            *("-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
        ],
        user=user,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = PrivateServer(process, port)
    try:
        _wait_port(port, process)
        # The port opens before recovery ends ("the database system is starting up").
        ready = str(Path(initdb).with_name("pg_isready"))
        deadline = time.monotonic() + 30
        while subprocess.run(
            [ready, "-q", "-h", "127.0.0.1", "-p", str(port)], check=False
        ).returncode:
            assert time.monotonic() < deadline, "private PostgreSQL never accepted connections"
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def redis_check(url: str) -> HealthCheck:
    async def check() -> None:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT)
        try:
            assert await client.ping()
        finally:
            await client.aclose()

    return check


def postgres_check(url: str) -> HealthCheck:
    async def check() -> None:
        connection = await asyncpg.connect(url, timeout=CHECK_TIMEOUT * 2)
        try:
            await connection.fetchval("SELECT 1")
        finally:
            await connection.close(timeout=CHECK_TIMEOUT)

    return check


@pytest.fixture
def lifecycle() -> Lifecycle:
    lifecycle = Lifecycle()
    lifecycle.mark_ready()
    return lifecycle


def _client(registry: HealthRegistry, lifecycle: Lifecycle) -> httpx.AsyncClient:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("probes must not reach the app")

    wrapped = HealthProbeMiddleware(app, registry=registry, lifecycle=lifecycle)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t")


async def _assert_down_then_live(client: httpx.AsyncClient, name: str, expected_error: str) -> None:
    ready = await client.get("/health/ready")
    assert ready.status_code == 503
    check = ready.json()["checks"][name]
    assert check["status"] == "DOWN"
    assert expected_error in check["error"]
    # Bounded by the check timeout (plus scheduling slack), not by the client or the OS.
    assert check["duration_ms"] <= CHECK_TIMEOUT * 1000 + 500
    live = await client.get("/health/live")
    assert live.status_code == 200


async def _wait_ready(client: httpx.AsyncClient, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await client.get("/health/ready")).status_code == 200:
            return
        await asyncio.sleep(0.1)
    pytest.fail("readiness did not come back")


@pytest.mark.parametrize("kind", ["redis", "postgres"])
async def test_stopped_dependency_is_down_within_timeout_and_liveness_stays_up(
    kind: str, request: pytest.FixtureRequest, lifecycle: Lifecycle
) -> None:
    server: PrivateServer = request.getfixturevalue(f"private_{kind}")
    if kind == "redis":
        check = redis_check(f"redis://127.0.0.1:{server.port}/0")
    else:
        check = postgres_check(f"postgresql://postgres@127.0.0.1:{server.port}/postgres")
    registry = HealthRegistry(cache_ttl=0.0)
    registry.add(kind, check, timeout=CHECK_TIMEOUT)
    async with _client(registry, lifecycle) as client:
        up = await client.get("/health/ready")
        assert up.status_code == 200, up.json()
        assert up.json()["checks"][kind]["status"] == "UP"

        # A hung server (process frozen): the connection is accepted by the kernel and then
        # nothing answers; only the check timeout can end the check.
        await asyncio.to_thread(server.freeze)
        await _assert_down_then_live(client, kind, f"timed out after {CHECK_TIMEOUT:g}s")
        await asyncio.to_thread(server.thaw)
        await _wait_ready(client)

        # A stopped server: the port is closed.
        await asyncio.to_thread(server.stop)
        await _assert_down_then_live(client, kind, "")
        error = (await client.get("/health/ready")).json()["checks"][kind]["error"]
        assert "timed out" not in error
        # Probe errors never carry the exception's message (hosts, users): only its type.
        assert "127.0.0.1" not in error
        assert str(server.port) not in error


@pytest.mark.redis
async def test_shared_redis_is_up(redis_url: str, lifecycle: Lifecycle) -> None:
    registry = HealthRegistry()
    registry.add("redis", redis_check(redis_url), timeout=CHECK_TIMEOUT)
    async with _client(registry, lifecycle) as client:
        assert (await client.get("/health/ready")).status_code == 200


@pytest.mark.postgres
async def test_shared_postgres_is_up(postgres_url: str, lifecycle: Lifecycle) -> None:
    registry = HealthRegistry()
    registry.add("postgres", postgres_check(postgres_url), timeout=CHECK_TIMEOUT)
    async with _client(registry, lifecycle) as client:
        assert (await client.get("/health/ready")).status_code == 200
