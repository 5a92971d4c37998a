"""End to end through a real uvicorn process: lifespan, problem+json and pool-timeout 503."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

APP = """
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from saasfw.db import Database, DbSettings, NotFoundError, install_exception_handlers

db = Database(
    DbSettings(data_dir="{data_dir}", pool_size=1, max_overflow=0, pool_timeout=0.5),
    service="e2e",
)
Session = Annotated[AsyncSession, db.depends()]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with db.lifespan():
        yield


app = FastAPI(lifespan=lifespan)
install_exception_handlers(app)


@app.get("/hold")
async def hold(session: Session) -> dict[str, bool]:
    await session.execute(text("SELECT 1"))
    await asyncio.sleep(2.0)  # keeps the only pooled connection checked out
    return {{"held": True}}


@app.get("/ping")
async def ping(session: Session) -> dict[str, int]:
    return {{"one": int((await session.execute(text("SELECT 1"))).scalar_one())}}


@app.get("/missing")
async def missing() -> None:
    raise NotFoundError("Thing", 42)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "e2e_app.py").write_text(APP.format(data_dir=tmp_path / "var"))
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "e2e_app:app", "--port", str(port), "--no-access-log"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/ping", timeout=1.0)
                break
            except httpx.TransportError:
                assert process.poll() is None, "uvicorn exited during start-up"
                assert time.monotonic() < deadline, "uvicorn did not start within 60 s"
                time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        # uvicorn re-raises SIGTERM after a graceful shutdown (exit status -15).
        assert process.returncode in (0, -signal.SIGTERM), output.decode()
        assert b"Application shutdown complete" in output, output.decode()


async def test_real_server_answers_problems_and_503_on_pool_timeout(server: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10.0) as client:
        missing = await client.get("/missing")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.json()["code"] == "db.not_found"
        holder = asyncio.create_task(client.get("/hold"))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        busy = await client.get("/ping")
        elapsed = time.monotonic() - started
        assert (await holder).json() == {"held": True}
        assert busy.status_code == 503, busy.text
        assert busy.json()["code"] == "db.database_unavailable"
        assert elapsed < 0.5 + 2.0  # pool_timeout plus slack on a shared CPU
        assert (await client.get("/ping")).json() == {"one": 1}
