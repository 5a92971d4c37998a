"""Three orders-service processes started at the same moment on an empty schema (issue 16).

All three become ready, the migrations ran once (one row in the version table, at head),
and no log holds an error or a traceback: the schema creation, the locked migrations, the
revocation tables and the development seed all tolerate replicas racing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await connection.fetch(statement)]
    finally:
        await connection.close()


def test_three_replicas_starting_together_migrate_once(tmp_path: Path, postgres_url: str) -> None:
    schema = f"orders_service_start_{uuid.uuid4().hex[:10]}"
    processes: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for index in range(3):
            port = _free_port()
            log = tmp_path / f"replica{index}.log"
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")},
                "SAASFW_ENV": "test",
                "SAASFW_DATA_DIR": str(tmp_path / f"replica{index}"),
                "SAASFW_CONFIG_DIR": str(ROOT / "examples" / "orders_service" / "config"),
                "SAASFW_DB__URL": postgres_url,
                "SAASFW_DB__SCHEMA_NAME": schema,
                "SAASFW_HTTP__PORT": str(port),
                "SAASFW_SECURITY__JWT__HMAC_SECRET": "start-" + "s" * 24 + "4b7c9e1d",
            }
            with log.open("wb") as out:
                process = subprocess.Popen(  # all three before any is ready
                    [str(Path(sys.prefix) / "bin" / "orders-service")],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            processes.append((process, f"http://127.0.0.1:{port}", log))
        deadline = time.monotonic() + 120
        ready: set[int] = set()
        while len(ready) < 3 and time.monotonic() < deadline:
            for index, (process, base, log) in enumerate(processes):
                assert process.poll() is None, log.read_text()
                try:
                    if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                        ready.add(index)
                except httpx.TransportError:
                    pass
            time.sleep(0.2)
        assert len(ready) == 3, [log.read_text()[-2000:] for _, _, log in processes]
        query = f'SELECT * FROM "{schema}".alembic_version'  # noqa: S608 - the test's own name
        versions = asyncio.run(_sql(postgres_url, query))
        assert len(versions) == 1
        for _, _, log in processes:
            text = log.read_text()
            assert "Traceback" not in text, text
            lowered = text.lower()
            assert "[error" not in lowered, text
            assert '"level": "error"' not in lowered, text
            assert '"level":"error"' not in lowered, text
    finally:
        for process, _, _ in processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
        asyncio.run(_sql(postgres_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
