"""The PostgreSQL rate-limit storage when the database is gone: the Redis storage's rules.

- a port nothing listens on (a real refused connection): each policy fails open or closed,
  ``sensitive`` closes whatever the default, the limiter turns ``degraded`` after
  ``degraded_after`` errors and the health check raises;
- a private PostgreSQL (initdb on a free port, never the shared one) stopped under the
  limiter, then started again: failures by policy while it is down, and checks, health and
  counting come back by themselves, without a restart.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from saasfw.security import RateLimiter, RateLimitPolicy, RateLimitSettings, SecurityError

pytest.importorskip("asyncpg")

BOUND = 60.0  # seconds; generous on purpose (shared 2-core machine), never a speed claim
SCOPE: dict[str, Any] = {"type": "http", "client": ("192.0.2.9", 1), "headers": []}
OPEN = RateLimitPolicy(name="open", limits="1000/minute", on_storage_error="open")
CLOSED = RateLimitPolicy(name="closed", limits="1000/minute", on_storage_error="closed")
LOGIN = RateLimitPolicy(name="login", limits="1000/minute", sensitive=True)
STRICT = RateLimitPolicy(name="strict", limits="2/hour", key="global")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(url: str) -> RateLimitSettings:
    return RateLimitSettings.model_validate(
        {
            "storage_url": url,
            "postgres_schema": "outage",
            "storage_timeout": 2.0,
            "retry_storage_after": 0.3,
            # The global default fails open: each policy's own mode decides below.
            "on_storage_error": "open",
        }
    )


async def _assert_fails_by_policy(limiter: RateLimiter) -> None:
    opened = await limiter.check(OPEN, SCOPE)
    assert opened.storage_failed
    assert opened.allowed
    closed = await limiter.check(CLOSED, SCOPE)
    assert closed.storage_failed
    assert not closed.allowed
    assert closed.retry_after >= 1
    login = await limiter.check(LOGIN, SCOPE)  # sensitive: closed although the default is open
    assert login.storage_failed
    assert not login.allowed


async def test_a_refused_connection_fails_each_policy_its_way() -> None:
    limiter = RateLimiter(_settings(f"postgresql://postgres@127.0.0.1:{_free_port()}/postgres"))
    try:
        await _assert_fails_by_policy(limiter)
        assert limiter.degraded  # three storage errors in a row
        assert limiter.storage_errors >= 3
        assert limiter.contention == 0
        with pytest.raises(SecurityError) as raised:
            await limiter.health_check()
        assert raised.value.code == "ratelimit.degraded"
        metrics = limiter.metrics()
        assert metrics.decisions["closed"]["failed_closed"] == 1
        assert metrics.decisions["open"]["failed_open"] == 1
    finally:
        await limiter.aclose()


@dataclass
class PrivatePostgres:
    """A PostgreSQL of the test's own on a free port, which it stops and starts."""

    bindir: Path
    data: Path
    port: int
    as_postgres: list[str]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        command = [*self.as_postgres, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(self.data / "log"), "-w", "-t", "100", "start")

    def stop(self) -> None:
        self._pg_ctl("-m", "immediate", "-w", "-t", "100", "stop")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bindirs:
        if os.environ.get("SAASFW_REQUIRE_SERVICES", "").strip() in {"1", "true", "yes"}:
            pytest.fail("SAASFW_REQUIRE_SERVICES=1 but no PostgreSQL server binaries")
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp(prefix="saasfw-rl-pg-"))
    if as_postgres:
        shutil.chown(root, "postgres")
    data = root / "data"
    pg = PrivatePostgres(Path(bindirs[-1]), data, _free_port(), as_postgres)
    initdb = [str(pg.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    try:
        subprocess.run(
            [*as_postgres, *initdb, "--no-sync"], check=True, capture_output=True, timeout=120
        )
        pg.start()
        yield pg
    finally:
        if (data / "postmaster.pid").exists():
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _until(what: str, condition: Any) -> None:
    deadline = time.monotonic() + BOUND
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_stopped_database_then_started_again(private_postgres: PrivatePostgres) -> None:
    limiter = RateLimiter(_settings(private_postgres.url))
    try:
        await limiter.health_check()
        assert [(await limiter.check(STRICT, SCOPE)).allowed for _ in range(3)] == [
            True,
            True,
            False,
        ]

        await asyncio.to_thread(private_postgres.stop)
        await _assert_fails_by_policy(limiter)
        assert limiter.degraded
        with pytest.raises(SecurityError):
            await limiter.health_check()

        await asyncio.to_thread(private_postgres.start)

        async def healthy() -> bool:
            try:
                await limiter.health_check()
            except SecurityError:
                return False
            return True

        await _until("the health check to pass again", healthy)
        assert not limiter.degraded

        async def counted() -> bool:
            decision = await limiter.check(CLOSED, SCOPE)
            return decision.allowed and not decision.storage_failed

        await _until("checks to be counted again", counted)
        # The table is UNLOGGED: an immediate stop is a crash for it, so its windows were
        # emptied and counting starts afresh (the README says so); it counts exactly again.
        decisions = [await limiter.check(STRICT, SCOPE) for _ in range(3)]
        assert [d.allowed for d in decisions] == [True, True, False]
        assert not any(d.storage_failed for d in decisions)
    finally:
        await limiter.aclose()
