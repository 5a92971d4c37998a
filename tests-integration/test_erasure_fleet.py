"""Crypto-shredding across a fleet: three orders-service processes on one PostgreSQL schema.

A customer erased through one instance is unreadable in the audit trail through every
instance at once and after the whole fleet restarts; other customers stay readable; the
customer's orders no longer hold the address; an erased customer cannot become an audit
subject again; the command-line erasure does the same; and every instance's hash-chained
log still verifies with ``saasfw-audit verify``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import ServerProcess, ServerStarter

ROOT = Path(__file__).resolve().parents[1]
PASSWORDS = {
    "alice": "alice-demo-password",
    "carol": "carol-demo-password",
    "erin": "erin-demo-password",
}
CHAIN_KEY = "c4" * 32
ERASED = "[erased]"  # what the audit search shows for a shredded field

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _drop_schema(postgres_url: str, schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(postgres_url)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


class Fleet:
    """Three instances sharing one schema, one field key, one KEK and one chain key."""

    def __init__(self, starter: ServerStarter, tmp_path: Path, postgres_url: str) -> None:
        self.starter = starter
        self.tmp_path = tmp_path
        self.postgres_url = postgres_url
        self.schema = f"orders_service_erasure_{uuid.uuid4().hex[:10]}"
        self.servers: list[ServerProcess] = []
        self.generation = 0

    def env(self, index: int) -> dict[str, str]:
        return {
            "SAASFW_ENV": "test",
            "SAASFW_DATA_DIR": str(self.tmp_path / f"instance{index}"),
            "SAASFW_CONFIG_DIR": str(ROOT / "examples" / "orders_service" / "config"),
            "SAASFW_DB__URL": self.postgres_url,
            "SAASFW_DB__SCHEMA_NAME": self.schema,
            # What a Kubernetes Secret gives every pod alike.
            "SAASFW_SECURITY__JWT__HMAC_SECRET": "erasure-" + "k" * 20 + "9f2c7a1e5b3d",
            "SAASFW_AUDIT__CHAIN_KEY": CHAIN_KEY,
            # One chain per pod (pods have their own host names; these share one host).
            "SAASFW_AUDIT__PRODUCER_ID": f"orders-service-{index}",
            "SAASFW_AUDIT__ENCRYPTION__KEYS__K1": "e1" * 32,
            "SAASFW_AUDIT__ENCRYPTION__ACTIVE_KEY_ID": "k1",
            "SAASFW_AUDIT__ENCRYPTION__KEK_KEYS__KEK1": "a7" * 32,
            "SAASFW_AUDIT__ENCRYPTION__ACTIVE_KEK_ID": "kek1",
            "SAASFW_LIMITS__LOGIN": "6000/minute",
            "SAASFW_K8S__LIFECYCLE__DRAIN_TIMEOUT_SECONDS": "2",
        }

    def start(self) -> None:
        self.generation += 1
        self.servers = []
        for index in range(3):
            env = self.env(index)
            port = _free_port()
            env["SAASFW_HTTP__PORT"] = str(port)
            command = [str(Path(sys.prefix) / "bin" / "orders-service")]
            name = f"instance{index}-{self.generation}"
            self.servers.append(self.starter(command, env=env, port=port, name=name))

    def stop(self) -> None:
        for server in self.servers:
            if server.process.poll() is None:
                assert server.terminate() == 0, server.output()

    def url(self, index: int) -> str:
        return self.servers[index].base_url

    def state_dir(self, index: int) -> Path:
        return self.tmp_path / f"instance{index}" / "orders_service"


@pytest.fixture
def fleet(tmp_path: Path, postgres_url: str, server_starter: ServerStarter) -> Iterator[Fleet]:
    made = Fleet(server_starter, tmp_path, postgres_url)
    try:
        made.start()
        yield made
    finally:
        for server in made.servers:
            if server.process.poll() is None:
                server.terminate()
        _drop_schema(postgres_url, made.schema)


def _token(base: str, user: str) -> dict[str, str]:
    response = httpx.post(
        f"{base}/auth/login", json={"username": user, "password": PASSWORDS[user]}, timeout=30
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _order(base: str, headers: dict[str, str], email: str) -> httpx.Response:
    body = {"customer_email": email, "sku": "WIDGET-1", "quantity": 1, "unit_price_cents": 100}
    return httpx.post(f"{base}/orders", json=body, headers=headers, timeout=30)


def _emails(base: str, headers: dict[str, str], order_id: str) -> list[str]:
    """The customer e-mails of an order's audit events, decrypted by this instance."""
    response = httpx.get(
        f"{base}/audit/events",
        params={"resource_id": order_id, "decrypt": "true"},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return [e["details"]["customer_email"] for e in response.json()["items"]]


def _within(check: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"{what}: not within {limit}s")


def _erase(base: str, headers: dict[str, str], email: str) -> httpx.Response:
    return httpx.post(
        f"{base}/admin/customers/erasure",
        json={"customer_email": email},
        headers=headers,
        timeout=60,
    )


def _verify_chain(fleet: Fleet, index: int) -> subprocess.CompletedProcess[str]:
    """``saasfw-audit verify`` on one instance's log, as an operator runs it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    state = fleet.state_dir(index)
    secrets = json.loads((state / "dev-secrets.json").read_text())
    seed = base64.b64decode(secrets["audit_checkpoint_key"])
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    key_file = fleet.tmp_path / f"checkpoint-{index}.pub"
    key_file.write_bytes(public)
    command = [
        str(Path(sys.prefix) / "bin" / "saasfw-audit"),
        "verify",
        str(state / "audit" / "audit.jsonl"),
        "--checkpoints",
        str(state / "audit" / "checkpoints.jsonl"),
        "--public-key-file",
        str(key_file),
        "--no-progress",
    ]
    env = {**os.environ, "SAASFW_AUDIT__CHAIN_KEY": CHAIN_KEY}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def _readable_everywhere(
    fleet: Fleet, auditor: list[dict[str, str]], order: str, email: str
) -> Callable[[], bool]:
    def check() -> bool:
        return all(
            (emails := _emails(fleet.url(i), auditor[i], order)) and set(emails) == {email}
            for i in range(3)
        )

    return check


def test_an_erasure_on_one_instance_holds_on_every_instance_and_after_a_restart(
    fleet: Fleet,
) -> None:
    a, b, c = fleet.url(0), fleet.url(1), fleet.url(2)
    clerk = _token(a, "alice")
    ann = _order(a, clerk, "Ann@example.com").json()["id"]
    bob = _order(b, clerk, "bob@example.com").json()["id"]
    patched = httpx.patch(
        f"{c}/orders/{ann}", json={"version": 1, "status": "paid"}, headers=clerk, timeout=30
    )
    assert patched.status_code == 200, patched.text
    auditor = [_token(fleet.url(i), "erin") for i in range(3)]
    # Relayed into the shared audit table and readable through every instance.
    _within(_readable_everywhere(fleet, auditor, ann, "Ann@example.com"), "ann readable")
    _within(_readable_everywhere(fleet, auditor, bob, "bob@example.com"), "bob readable")
    assert len(_emails(a, auditor[0], ann)) == 2

    # Only an admin may erase; the clerk is refused and nothing changes.
    assert _erase(b, clerk, "ann@example.com").status_code == 403
    admin = _token(b, "carol")
    erased = _erase(b, admin, "ann@example.com")  # the address in another case: same customer
    assert erased.status_code == 200, erased.text
    key_id = erased.json()["key_id"]
    assert key_id is not None
    assert key_id.startswith("s-")
    assert erased.json()["orders_scrubbed"] == 1

    # At once on every instance: each decryption reads the shared key row.
    for i in range(3):
        assert _emails(fleet.url(i), auditor[i], ann) == [ERASED, ERASED]
        assert _emails(fleet.url(i), auditor[i], bob) == ["bob@example.com"]
    stored = httpx.get(f"{a}/orders/{ann}", headers=clerk, timeout=30).json()
    assert stored["customer_email"] == "<erased>"
    # The erased customer never gets a new key, whichever instance is asked.
    for base in (a, c):
        again = _order(base, clerk, "ann@example.com")
        assert again.status_code == 409, again.text
    assert _order(c, clerk, "bob@example.com").status_code == 201
    # The erasure is audited (by key id, never the address) and erasing again is harmless.
    assert _erase(c, _token(c, "carol"), "ann@example.com").json()["key_id"] == key_id

    # After the whole fleet restarts, the erasure still holds and bob is still readable.
    fleet.stop()
    fleet.start()
    auditor = [_token(fleet.url(i), "erin") for i in range(3)]
    for i in range(3):
        assert _emails(fleet.url(i), auditor[i], ann) == [ERASED, ERASED]
        assert _emails(fleet.url(i), auditor[i], bob) == ["bob@example.com"]

    # The command-line erasure (an operator's Job) does the same for bob, audited through
    # the outbox, which a running instance relays into its chain.
    cli = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "orders-service"), "erase", "acme", "bob@example.com"],
        env={**os.environ, **fleet.env(0), "SAASFW_HTTP__PORT": str(_free_port())},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "erased: key s-" in cli.stdout
    assert "2 order(s)" in cli.stdout
    for i in range(3):
        assert set(_emails(fleet.url(i), auditor[i], bob)) == {ERASED}

    def cli_erasure_audited() -> bool:
        response = httpx.get(
            f"{fleet.url(0)}/audit/events",
            params={"type": "orders.customer.erased"},
            headers=auditor[0],
            timeout=30,
        )
        return any(e["details"].get("via") == "cli" for e in response.json()["items"])

    _within(cli_erasure_audited, "the CLI erasure relayed into the audit trail")

    fleet.stop()
    logs = ""
    for i in range(3):
        result = _verify_chain(fleet, i)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[-1].startswith("OK"), result.stdout
        logs += (fleet.state_dir(i) / "audit" / "audit.jsonl").read_text()
    assert "ann@example.com" not in logs.lower()
    assert "bob@example.com" not in logs
    records: list[dict[str, Any]] = [json.loads(line) for line in logs.splitlines() if line]
    assert any(r["type"] == "audit.subject.erased" for r in records)
