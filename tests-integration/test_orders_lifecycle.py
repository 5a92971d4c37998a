"""The orders example's audit trail and its shutdown, observed from outside the process."""

from __future__ import annotations

import base64
import json
import re
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from saasfw.audit import verify_log

if TYPE_CHECKING:
    from conftest import OrdersService

PASSWORD = {"alice": "alice-demo-password", "erin": "erin-demo-password"}


def _login(base_url: str, user: str = "alice") -> httpx.Response:
    return httpx.post(
        f"{base_url}/auth/login",
        json={"username": user, "password": PASSWORD[user]},
        timeout=60,
    )


def _logins_in_flight(base_url: str) -> int:
    metrics = httpx.get(f"{base_url}/metrics", timeout=5).text
    for line in metrics.splitlines():
        if line.startswith("saasfw_http_requests_in_flight{") and 'route="/auth/login"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def _dev_secrets(state_dir: Path) -> dict[str, str]:
    loaded: dict[str, str] = json.loads((state_dir / "dev-secrets.json").read_text())
    return loaded


def _audit_records(state_dir: Path) -> list[dict[str, Any]]:
    path = state_dir / "audit" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]


def _verify(state_dir: Path) -> Any:
    secrets = _dev_secrets(state_dir)
    seed = base64.b64decode(secrets["audit_checkpoint_key"])
    return verify_log(
        state_dir / "audit" / "audit.jsonl",
        chain_key=base64.b64decode(secrets["audit_chain_key"]),
        public_key=Ed25519PrivateKey.from_private_bytes(seed).public_key(),
        checkpoints_path=state_dir / "audit" / "checkpoints.jsonl",
    )


def test_sigterm_drains_in_flight_requests_and_flushes_the_audit_trail(
    fresh_orders: OrdersService,
) -> None:
    service = fresh_orders
    base = service.base_url
    results: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        response = _login(base)
        with lock:
            results.append(response.status_code)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for thread in threads:
        thread.start()
    # Wait until the server itself reports the logins in flight (argon2 is deliberately
    # slow), so SIGTERM provably arrives while requests are being served.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        in_flight = _logins_in_flight(base)
        if in_flight >= 1 and in_flight + len(results) >= len(threads):
            break
        time.sleep(0.01)
    service.server.signal_server(signal.SIGTERM)

    # Readiness turns 503 at once while the in-flight logins finish.
    saw_not_ready = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(t.is_alive() for t in threads):
        try:
            ready = httpx.get(f"{base}/health/ready", timeout=2)
        except httpx.TransportError:
            break
        if ready.status_code == 503:
            saw_not_ready = True
            assert ready.json()["availability"] in ("draining", "stopped")
            break
        time.sleep(0.02)
    for thread in threads:
        thread.join(30)
    assert results == [200] * 12
    assert service.server.process.wait(timeout=30) == 0, service.server.output()
    assert saw_not_ready or all(not t.is_alive() for t in threads)
    output = service.server.output()
    assert "availability ready -> draining" in output
    assert "availability draining -> stopped" in output

    # Every login reached the audit file before exit, and the chain verifies.
    records = _audit_records(service.state_dir)
    logins = [r for r in records if r["type"] == "auth.login.succeeded"]
    assert len(logins) == 12
    report = _verify(service.state_dir)
    assert report.ok, report.as_dict()
    assert report.records == len(records)


def test_audit_trail_of_mutations_is_encrypted_and_verifies(fresh_orders: OrdersService) -> None:
    service = fresh_orders
    email = f"private-{uuid.uuid4().hex[:8]}@example.com"
    with service.client() as client:
        token = _login(service.base_url).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "audit-it-0001"}
        created = client.post(
            "/orders",
            json={
                "customer_email": email,
                "sku": "AUDIT-1",
                "quantity": 1,
                "unit_price_cents": 100,
            },
            headers=headers,
        ).json()
        client.patch(
            f"/orders/{created['id']}", json={"version": 1, "status": "paid"}, headers=headers
        )
        # A client claiming another identity in headers changes nothing about the actor.
        client.get("/orders", headers={**headers, "X-User": "root", "X-Actor": "root"})
        client.post("/auth/login", json={"username": "alice", "password": "wrong"})
    assert service.server.terminate() == 0

    records = _audit_records(service.state_dir)
    raw = (service.state_dir / "audit" / "audit.jsonl").read_text("utf-8")
    assert email not in raw  # the customer e-mail is only ever stored encrypted
    by_type = {r["type"]: r for r in records}
    created_event = by_type["orders.order.created"]
    assert created_event["actor"]["id"] == "alice"
    assert created_event["actor"]["tenant"] == "acme"
    assert created_event["correlation_id"] == "audit-it-0001"
    assert created_event["resource"] == {"type": "order", "id": created["id"]}
    assert created_event["details"]["customer_email"].startswith("enc:")
    # One request, one id everywhere: the JSON access log line carries the same correlation
    # id and trace id as the audit event.
    assert re.fullmatch(r"[0-9a-f]{32}", created_event["trace_id"])
    access = [
        json.loads(line)
        for line in service.server.output().splitlines()
        if line.startswith("{") and '"saasfw.access"' in line
    ]
    create_line = next(
        a for a in access if a.get("correlation_id") == "audit-it-0001" and a["method"] == "POST"
    )
    assert create_line["trace_id"] == created_event["trace_id"]
    assert create_line["route"] == "/orders"
    assert by_type["orders.order.updated"]["details"]["changed"] == ["status"]
    failed = by_type["auth.login.failed"]
    assert failed["outcome"] == "failure"
    assert "wrong" not in json.dumps(failed)
    requests = [r for r in records if r["type"] == "http.request"]
    patch = next(r for r in requests if r["details"]["method"] == "PATCH")
    assert patch["details"]["route"] == "/orders/{order_id}"  # the template, not the id
    assert patch["details"]["status"] == 200
    assert patch["actor"]["id"] == "alice"
    assert created["id"] not in json.dumps(requests)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    report = _verify(service.state_dir)
    assert report.ok, report.as_dict()


def test_production_without_keys_refuses_to_start_before_binding(
    tmp_path: Path, free_port: int
) -> None:
    import os
    import socket
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}
    env["SAASFW_ENV"] = "production"
    env["SAASFW_HTTP__PORT"] = str(free_port)
    env["SAASFW_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "orders-service")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 78, result.stdout + result.stderr
    assert "security.jwt.hmac_secret" in result.stderr
    assert "audit" in result.stderr
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", free_port))  # never bound by the refused service
    assert not (tmp_path / "orders_service" / "dev-secrets.json").exists()
