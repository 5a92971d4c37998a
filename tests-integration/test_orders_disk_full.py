"""Issue 17 acceptance 1, end to end: the orders service with its audit log on a full disk.

A real ``orders-service`` process (on PostgreSQL) keeps its audit file on a 512 KiB tmpfs
(the kernel's own short writes and ENOSPC; nothing is injected) and a small outbox bound.
Orders are created until the disk is full: the relay cannot deliver, the outbox fills, and
mutations past its bound are refused with 503 and ``Retry-After``, committing nothing.
Then space returns: the relay drains, new orders succeed, every line of the log parses,
the chain verifies, and every committed order has exactly one ``created`` event (none for
a refused one).

Needs root to mount the tmpfs; skipped with the reason otherwise.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import verify_log

PASSWORD = "alice-demo-password"
BOUND = 15  # audit.outbox.max_depth: staging refuses past this many waiting events


def _conftest() -> Any:
    """This directory's conftest module (pytest's importlib mode keeps it off sys.path)."""
    path = str(Path(__file__).with_name("conftest.py"))
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == path:
            return module
    raise LookupError("tests-integration/conftest.py is not loaded")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    mount = shutil.which("mount")
    if mount is None or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs not permitted here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _create(client: httpx.Client, base_url: str, token: str) -> httpx.Response:
    return client.post(
        f"{base_url}/orders",
        json={
            "customer_email": f"{uuid.uuid4().hex[:12]}@example.com",
            "sku": "WIDGET-1",
            "quantity": 1,
            "unit_price_cents": 100,
        },
        headers={"Authorization": f"Bearer {token}"},
    )


def _database(url: str, schema: str) -> tuple[set[str], int]:
    import asyncio

    import asyncpg

    async def read() -> tuple[set[str], int]:
        conn = await asyncpg.connect(url)
        try:
            # The schema is this test's own generated name, not input.
            rows = await conn.fetch(f'SELECT id FROM "{schema}".orders')  # noqa: S608
            waiting = await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".saasfw_audit_outbox'  # noqa: S608
            )
            return {str(r["id"]).replace("-", "") for r in rows}, int(waiting)
        finally:
            await conn.close()

    return asyncio.run(read())


def _stuck(what: str, url: str, schema: str, server: Any, log: Path) -> str:
    """What a failed drain wait reports: the waiting rows, the leases, the disk, the server's
    last lines (so a failure in CI can be read without rerunning it)."""
    import asyncio

    import asyncpg

    async def read() -> str:
        conn = await asyncpg.connect(url)
        try:
            # The schema is this test's own generated name, not input.
            rows = await conn.fetch(
                f"SELECT sequence, attempts, last_error FROM "  # noqa: S608
                f'"{schema}".saasfw_audit_outbox ORDER BY sequence LIMIT 5'
            )
            leases = await conn.fetch(f'SELECT * FROM "{schema}".saasfw_audit_outbox_leases')  # noqa: S608
            return f"rows={[dict(r) for r in rows]} leases={[dict(r) for r in leases]}"
        finally:
            await conn.close()

    try:
        state = asyncio.run(read())
    except Exception as exc:  # the diagnosis must not hide the failure
        state = f"(outbox unreadable: {exc!r})"
    usage = shutil.disk_usage(log.parent)
    tail = "\n".join(server.output().splitlines()[-60:])
    return f"{what}: {state}; disk free={usage.free}\nserver log tail:\n{tail}"


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_full_disk_refuses_mutations_past_the_bound_then_drains(
    tiny_disk: Path, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    ct = _conftest()
    env = ct.orders_service_env(
        "postgres", tmp_path, postgres_url=postgres_url, redis_url=redis_url
    )
    schema = env["SAASFW_DB__SCHEMA_NAME"]
    log = tiny_disk / "audit.jsonl"
    env["SAASFW_AUDIT__FILE__PATH"] = str(log)
    env["SAASFW_AUDIT__OUTBOX__MAX_DEPTH"] = str(BOUND)
    port = ct.find_free_port()
    env["SAASFW_HTTP__PORT"] = str(port)
    ballast = tiny_disk / "ballast"
    # Leaves ~24 KiB: a few dozen events. Once it is removed, the room must hold whatever
    # waits by then: the bound is read at most once a second, so a fast client gets a
    # second's worth of orders past it.
    ballast.write_bytes(b"\0" * 488 * 1024)
    server = ct.start_server(
        ct.orders_service_command(),
        env=env,
        port=port,
        log_path=tmp_path / "server.log",
        ready_timeout=120,
    )
    created: set[str] = set()
    refused: list[httpx.Response] = []
    try:
        with httpx.Client(timeout=60) as client:
            login = client.post(
                f"{server.base_url}/auth/login",
                json={"username": "alice", "password": PASSWORD},
            )
            assert login.status_code == 200, login.text
            token = login.json()["access_token"]
            for _ in range(600):
                response = _create(client, server.base_url, token)
                if response.status_code == 201:
                    created.add(response.json()["id"])
                else:
                    refused.append(response)
                    if len(refused) >= 5:
                        break
            assert refused, "the disk never filled: no mutation was refused"
            for response in refused:
                assert response.status_code == 503, response.text
                assert int(response.headers["Retry-After"]) >= 1
                body = response.json()
                assert body["code"] == "audit.unavailable", body
                assert body["correlation_id"]
            committed, waiting = _database(postgres_url, schema)
            assert waiting >= BOUND  # the outbox holds what the disk refused
            assert committed == {c.replace("-", "") for c in created}  # 503s left no row

            print(f"waiting at the bound: {waiting}")
            ballast.unlink()  # space returns
            # The relay retries with capped backoff (30 s at most between attempts).
            deadline = time.monotonic() + 300
            while _database(postgres_url, schema)[1] > 0:
                assert time.monotonic() < deadline, _stuck(
                    "the outbox did not drain", postgres_url, schema, server, log
                )
                time.sleep(0.2)
            for _ in range(5):
                # The outbox's depth reading is reused for a second: a client that honours
                # Retry-After gets through once the reading is fresh.
                deadline = time.monotonic() + 60
                response = _create(client, server.base_url, token)
                while response.status_code == 503 and time.monotonic() < deadline:
                    time.sleep(float(response.headers["Retry-After"]))
                    response = _create(client, server.base_url, token)
                assert response.status_code == 201, response.text
                created.add(response.json()["id"])
            deadline = time.monotonic() + 60
            while _database(postgres_url, schema)[1] > 0:
                assert time.monotonic() < deadline, _stuck(
                    "the outbox did not drain again", postgres_url, schema, server, log
                )
                time.sleep(0.2)
        assert server.terminate(timeout=60) == 0
    finally:
        if server.process.poll() is None:
            server.terminate()

    committed, _ = _database(postgres_url, schema)
    ct.drop_postgres_schema(postgres_url, schema)
    ct.delete_redis_prefix(redis_url, env["SAASFW_REDIS_PREFIX"])
    assert committed == {c.replace("-", "") for c in created}
    lines = log.read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines if line]  # every line parses
    ids = Counter(r["id"] for r in records)
    assert all(n == 1 for n in ids.values()), ids.most_common(3)
    made = Counter(
        r["resource"]["id"].replace("-", "") for r in records if r["type"] == "orders.order.created"
    )
    assert set(made) == committed  # no order without its event, no event without its order
    assert all(n == 1 for n in made.values())
    state = tmp_path / "orders_service"
    secrets = json.loads((state / "dev-secrets.json").read_text())
    seed = base64.b64decode(secrets["audit_checkpoint_key"])
    report = verify_log(
        log,
        chain_key=base64.b64decode(secrets["audit_chain_key"]),
        public_key=Ed25519PrivateKey.from_private_bytes(seed).public_key(),
        checkpoints_path=state / "audit" / "checkpoints.jsonl",
    )
    assert report.ok, report.as_dict()
    print(
        f"created={len(created)} refused={len(refused)} records={len(records)} "
        f"log={log.stat().st_size} bytes bound={BOUND}"
    )
