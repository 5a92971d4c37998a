"""Multiprocess metrics over a real ``uvicorn --workers 2``: every scrape sees all workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

APP = textwrap.dedent(
    """
    import os
    from contextlib import asynccontextmanager
    from fastapi import FastAPI
    from saasfw.observability import ObservabilitySettings, setup_observability

    observability = setup_observability(
        ObservabilitySettings.model_validate(
            {
                "environment": "production",
                "tracing": {"enabled": False},
                "access_log": {"enabled": False},
            }
        )
    )

    @asynccontextmanager
    async def lifespan(app):
        async with observability.lifespan():
            yield

    app = FastAPI(lifespan=lifespan, telemetry={"tracing": False})

    @app.get("/items/{item_id}")
    async def item(item_id: int):
        return {"pid": os.getpid()}

    observability.install(app)
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _total(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "saasfw_http_requests_total"
        and sample.labels == {"method": "GET", "route": "/items/{item_id}", "status": "200"}
    )


def test_two_uvicorn_workers_aggregate_in_every_scrape(tmp_path: Path) -> None:
    (tmp_path / "multi_app.py").write_text(APP)
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    port = _free_port()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(prom_dir)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "multi_app:app",
            "--app-dir",
            str(tmp_path),
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/metrics", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.2)
        pids: set[int] = set()
        sent = 0
        # A new connection per request lets the kernel spread them over both workers;
        # keep going until both have served some (almost always within a few requests).
        while sent < 40 or (len(pids) < 2 and sent < 400):
            response = httpx.get(f"{base}/items/{sent}", timeout=10)
            assert response.status_code == 200
            pids.add(response.json()["pid"])
            sent += 1
        scrapes = [httpx.get(f"{base}/metrics", timeout=10).text for _ in range(6)]
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
        if server.stderr is not None:
            server.stderr.close()
    assert len(pids) == 2
    assert all(_total(text) == sent for text in scrapes), [_total(t) for t in scrapes]
    assert list(prom_dir.glob("counter_*.db"))
