"""Acceptance 2: a real uvicorn process drains on SIGTERM, runs shutdown hooks, exits 0."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from saasfw.k8s import LifecycleSettings

pytestmark = pytest.mark.slow

SETTINGS = LifecycleSettings(drain_timeout_seconds=8.0, shutdown_timeout_seconds=5.0)

APP = textwrap.dedent(
    """
    import asyncio
    import os

    from fastapi import FastAPI

    from saasfw.k8s import HealthProbeMiddleware, HealthRegistry, Lifecycle, LifecycleSettings

    MARKERS = os.environ["MARKER_FILE"]


    def mark(line: str) -> None:
        with open(MARKERS, "a", encoding="utf-8") as handle:
            handle.write(line + "\\n")


    async def close_database() -> None:
        await asyncio.sleep(0.05)
        mark("database closed")


    async def flush_audit() -> None:
        await asyncio.sleep(0.05)
        mark("audit flushed")


    lifecycle = Lifecycle(
        LifecycleSettings(drain_timeout_seconds=8.0, shutdown_timeout_seconds=5.0)
    )
    # Registered first, runs last: the audit log may still write to the database.
    lifecycle.add_shutdown_hook("database-close", close_database)
    lifecycle.add_shutdown_hook("audit-flush", flush_audit)
    registry = HealthRegistry(cache_ttl=0.0)

    app = FastAPI(lifespan=lifecycle.lifespan)
    app.add_middleware(HealthProbeMiddleware, registry=registry, lifecycle=lifecycle)


    @app.get("/slow")
    async def slow() -> dict[str, str]:
        mark("slow started")
        await asyncio.sleep(2.0)
        mark("slow finished")
        return {"done": "yes"}
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}")


def test_sigterm_drains_in_flight_request_runs_hooks_and_exits_zero(tmp_path: Path) -> None:
    (tmp_path / "drain_app.py").write_text(APP, encoding="utf-8")
    markers = tmp_path / "markers.txt"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MARKER_FILE": str(markers)}
    command = [sys.executable, "-m", "saasfw.k8s", "serve", "drain_app:app"]
    command += ["--app-dir", str(tmp_path), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        with httpx.Client(base_url=base, timeout=5.0) as client:

            def ready() -> bool:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                try:
                    return client.get("/health/ready").status_code == 200
                except httpx.TransportError:
                    return False

            _wait_for(ready, 30.0, "the server to become ready")

            with ThreadPoolExecutor(max_workers=1) as pool:
                slow = pool.submit(lambda: httpx.get(f"{base}/slow", timeout=15.0))
                _wait_for(lambda: "slow started" in _lines(markers), 10.0, "the slow request")
                process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()

                # Readiness turns 503 at once and stays 503 while the request drains.
                answers: list[tuple[float, int, str]] = []
                while not slow.done():
                    response = client.get("/health/ready")
                    answers.append(
                        (
                            time.monotonic() - signalled,
                            response.status_code,
                            response.json()["availability"],
                        )
                    )
                    time.sleep(0.05)
                slow_response = slow.result()

        assert answers, "no readiness answer while the request was in flight"
        # A signal is delivered at the interpreter's next check; "at once" is the first
        # answer that could have seen it, and every answer after it.
        assert answers[0][0] < 1.0
        assert all(code == 503 for _, code, _ in answers), answers
        assert all(state == "draining" for _, _, state in answers), answers
        assert slow_response.status_code == 200
        assert slow_response.json() == {"done": "yes"}

        grace = SETTINGS.termination_grace_period_seconds - SETTINGS.prestop_sleep_seconds
        exit_code = process.wait(timeout=grace)
        assert exit_code == 0, process.stdout.read() if process.stdout else ""
        assert time.monotonic() - signalled < grace
        assert _lines(markers) == [
            "slow started",
            "slow finished",
            "audit flushed",
            "database closed",
        ]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_second_sigterm_cuts_the_drain_short_and_still_runs_hooks(tmp_path: Path) -> None:
    (tmp_path / "drain_app.py").write_text(APP.replace("sleep(2.0)", "sleep(6.0)"), "utf-8")
    markers = tmp_path / "markers.txt"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MARKER_FILE": str(markers)}
    command = [sys.executable, "-m", "saasfw.k8s", "serve", "drain_app:app"]
    command += ["--app-dir", str(tmp_path), "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with httpx.Client(base_url=base, timeout=5.0) as client:

            def ready() -> bool:
                assert process.poll() is None
                try:
                    return client.get("/health/ready").status_code == 200
                except httpx.TransportError:
                    return False

            _wait_for(ready, 30.0, "the server to become ready")
            with ThreadPoolExecutor(max_workers=1) as pool:
                slow = pool.submit(lambda: httpx.get(f"{base}/slow", timeout=15.0))
                _wait_for(lambda: "slow started" in _lines(markers), 10.0, "the slow request")
                process.send_signal(signal.SIGTERM)
                # The 6 s request keeps the drain going, so the server is still answering.
                _wait_for(
                    lambda: client.get("/health/ready").status_code == 503,
                    5.0,
                    "readiness to turn 503",
                )
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=10.0) == 0
                with pytest.raises(httpx.HTTPError):
                    slow.result().raise_for_status()
        # The request was cut, not finished, and the hooks still ran in order.
        assert _lines(markers) == ["slow started", "audit flushed", "database closed"]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
