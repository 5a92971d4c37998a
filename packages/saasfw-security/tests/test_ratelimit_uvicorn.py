"""Acceptance 1: a Redis-backed limit is exact across uvicorn worker processes.

One uvicorn with two workers serves the whole module; each run uses a fresh limiter key (the
``x-run`` header, through a custom key function), so runs never see each other's counts.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.redis, pytest.mark.slow]

RUNS = 20
CONCURRENT = 200
LIMIT = 5

APP_SOURCE = textwrap.dedent(
    """
    import os

    from fastapi import Depends, FastAPI

    from saasfw.security._proxies import TrustedProxies
    from saasfw.security._ratelimit import RateLimiter, RateLimitSettings
    from saasfw.security._ratelimit_asgi import RateLimit, RateLimitMiddleware

    settings = RateLimitSettings.model_validate(
        {
            "storage_url": os.environ["RL_TEST_REDIS_URL"],
            "key_prefix": os.environ["RL_TEST_PREFIX"],
            "strategy": os.environ["RL_TEST_STRATEGY"],
            "storage_timeout": 2.0,
        }
    )
    limiter = RateLimiter(settings)
    PID = str(os.getpid()).encode()


    def run_key(scope):
        for name, value in scope["headers"]:
            if name == b"x-run":
                return value.decode()
        return None


    inner = FastAPI()


    @inner.get("/hit", dependencies=[Depends(RateLimit("5/minute", key=run_key))])
    async def hit():
        return {"ok": True}


    @inner.get("/ready")
    async def ready():
        return {"ok": True}


    # Acceptance 2 over a real server: per-address limits, spoofed X-Forwarded-For.
    direct = RateLimiter(settings)
    behind_proxy = RateLimiter(settings, proxies=TrustedProxies(["127.0.0.1/32"]))


    @inner.get("/per-address", dependencies=[Depends(RateLimit("10/minute", limiter=direct))])
    async def per_address():
        return {"ok": True}


    @inner.get(
        "/per-address-behind-proxy",
        dependencies=[Depends(RateLimit("10/minute", limiter=behind_proxy))],
    )
    async def per_address_behind_proxy():
        return {"ok": True}


    inner.add_middleware(RateLimitMiddleware, limiter=limiter)


    async def app(scope, receive, send):
        async def tagged(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-worker-pid", PID)]
            await send(message)

        await inner(scope, receive, tagged)
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    pytest.importorskip("redis")
    pytest.importorskip("uvicorn")
    app_dir = tmp_path_factory.mktemp("rl_app")
    (app_dir / "rl_app.py").write_text(APP_SOURCE)
    port = _free_port()
    prefix = f"t-uv-{secrets.token_hex(6)}"
    env = {
        **os.environ,
        "RL_TEST_REDIS_URL": redis_url,
        "RL_TEST_PREFIX": prefix,
        "RL_TEST_STRATEGY": "sliding-window-counter",
    }
    log = (app_dir / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "rl_app:app",
            "--app-dir",
            str(app_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--no-proxy-headers",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_both_workers(base, process, app_dir / "uvicorn.log")
        yield base, prefix
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_for_both_workers(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    pids: set[str] = set()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"uvicorn exited: {log.read_text()[-2000:]}")
        try:
            # A fresh connection each time so the kernel can hand it to either worker.
            response = httpx.get(f"{base}/ready", timeout=1.0)
            pids.add(response.headers["x-worker-pid"])
            if len(pids) >= 2:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail(f"uvicorn did not bring up two workers in time (saw {pids})")


class RawConnection:
    """A minimal keep-alive HTTP/1.1 client: the test's load generator must cost far less
    CPU than the server it measures (httpx costs several times more per request)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def get(self, path: str, run_key: str) -> tuple[int, str]:
        self.writer.write(f"GET {path} HTTP/1.1\r\nhost: test\r\nx-run: {run_key}\r\n\r\n".encode())
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers["x-worker-pid"]

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def test_exactly_five_successes_in_each_of_twenty_runs(server: tuple[str, str]) -> None:
    base, _ = server
    host, port = base.removeprefix("http://").split(":")
    # Keep-alive connections opened once: the kernel hands each to either worker, so every
    # run's requests are spread over both processes.
    connections = await asyncio.gather(
        *(RawConnection.open(host, int(port)) for _ in range(CONCURRENT))
    )
    served_by: set[str] = set()
    try:
        for run in range(RUNS):
            run_key = f"run-{run}-{secrets.token_hex(4)}"
            results = await asyncio.gather(*(c.get("/hit", run_key) for c in connections))
            statuses = Counter(status for status, _ in results)
            pids = {pid for _, pid in results}
            served_by |= pids
            assert statuses == Counter({200: LIMIT, 429: CONCURRENT - LIMIT}), (run, statuses)
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    # Both workers really took part: the exactness is across processes, not within one.
    assert len(served_by) >= 2


@pytest.mark.parametrize("trusted_proxy", [False, True], ids=["direct", "behind-proxy"])
async def test_spoofed_forwarded_for_gets_429_after_ten(
    server: tuple[str, str], trusted_proxy: bool
) -> None:
    base, _ = server
    path = "/per-address-behind-proxy" if trusted_proxy else "/per-address"
    statuses = []
    async with httpx.AsyncClient(base_url=base) as client:
        for i in range(50):
            # Behind the (trusted) proxy, the proxy appends the client it saw; everything
            # left of that is what the client sent and changes every time.
            chain = f"10.{i}.0.1, 203.0.113.{i}" + (", 198.51.100.7" if trusted_proxy else "")
            response = await client.get(path, headers={"X-Forwarded-For": chain})
            statuses.append(response.status_code)
    assert statuses == [200] * 10 + [429] * 40


async def test_every_key_the_limiter_wrote_has_a_ttl(
    server: tuple[str, str], redis_url: str
) -> None:
    import redis.asyncio

    base, prefix = server
    async with httpx.AsyncClient(base_url=base) as client:
        await client.get("/hit", headers={"x-run": f"ttl-{secrets.token_hex(4)}"})
    client_redis = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client_redis.scan_iter(match=f"{prefix}:*", count=1000)]
        ttls = [await client_redis.ttl(k) for k in keys]
    finally:
        await client_redis.aclose()
    assert keys
    assert all(0 < ttl <= 120 for ttl in ttls), ttls
