"""Users live in the example's database; refresh re-reads them; disabling revokes everything.

Over HTTP against a real uvicorn process (SQLite; PostgreSQL + Redis when configured): a
demoted user's old refresh token yields tokens with the new roles, a disabled user's
refresh, access token and API keys are refused, a deleted user's refresh is refused, and
every admin change is in the audit trail. A disable holds on every replica and survives
a restart (the start-up seeding never overwrites a row).
"""

from __future__ import annotations

import base64
import json
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from conftest import OrdersService, ServerStarter

PASSWORDS = {
    "alice": "alice-demo-password",
    "bob": "bob-demo-password",
    "carol": "carol-demo-password",
    "dave": "dave-demo-password",
    "erin": "erin-demo-password",
}
ORDER = {"customer_email": "u@example.com", "sku": "X", "quantity": 1, "unit_price_cents": 1}


def login(client: httpx.Client, user: str) -> dict[str, Any]:
    response = client.post("/auth/login", json={"username": user, "password": PASSWORDS[user]})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def bearer(client: httpx.Client, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {login(client, user)['access_token']}"}


def assert_problem(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in response.text


def claims(access_token: str) -> dict[str, Any]:
    """The payload of a JWT (its signature is the service's business, checked on use)."""
    payload = access_token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


def refresh(client: httpx.Client, refresh_token: str) -> httpx.Response:
    return client.post("/auth/refresh", json={"refresh_token": refresh_token})


def audit_records(
    state_dir: Path, type_: str, where: Callable[[dict[str, Any]], bool] = lambda r: True
) -> list[dict[str, Any]]:
    """The log's records of ``type_`` (and ``where``), once the relay delivered at least one."""
    path = state_dir / "audit" / "audit.jsonl"
    deadline = time.monotonic() + 60
    while True:
        records = [json.loads(line) for line in path.read_text("utf-8").splitlines() if line]
        found = [r for r in records if r.get("type") == type_ and where(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def set_roles(client: httpx.Client, admin: dict[str, str], user: str, roles: list[str]) -> None:
    changed = client.put(f"/admin/users/{user}/roles", json={"roles": roles}, headers=admin)
    assert changed.status_code == 200, changed.text
    assert changed.json()["roles"] == sorted(roles)


def test_a_demoted_users_old_refresh_token_yields_the_new_roles(orders: OrdersService) -> None:
    with orders.client() as client:
        carol = bearer(client, "carol")
        set_roles(client, carol, "bob", ["admin"])
        bob = login(client, "bob")
        assert claims(bob["access_token"])["roles"] == ["admin"]

        set_roles(client, carol, "bob", ["viewer"])
        rotated = refresh(client, bob["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        new_access = rotated.json()["access_token"]
        assert claims(new_access)["roles"] == ["viewer"]
        assert claims(new_access)["tenant"] == "acme"
        headers = {"Authorization": f"Bearer {new_access}"}
        assert client.get("/orders", headers=headers).status_code == 200
        assert_problem(client.post("/orders", json=ORDER, headers=headers), 403)
        key = {"name": "should-not-exist", "scopes": ["orders:read"]}
        assert_problem(client.post("/api-keys", json=key, headers=headers), 403)

    (event,) = audit_records(
        orders.state_dir,
        "orders.user.roles_changed",
        lambda e: bool(e["details"]["after"] == ["viewer"]),
    )
    assert event["actor"]["id"] == "carol"
    assert event["details"]["before"] == ["admin"]


def test_a_disabled_user_loses_refresh_access_tokens_and_api_keys(orders: OrdersService) -> None:
    with orders.client() as client:
        carol = bearer(client, "carol")
        set_roles(client, carol, "erin", ["admin"])  # an admin, so erin can create a key
        erin = login(client, "erin")
        erin_headers = {"Authorization": f"Bearer {erin['access_token']}"}
        created = client.post(
            "/api-keys", json={"name": "erin-sync", "scopes": ["orders:read"]}, headers=erin_headers
        )
        assert created.status_code == 201, created.text
        machine = {"X-API-Key": created.json()["key"]}
        assert client.get("/orders", headers=machine).status_code == 200
        assert client.get("/orders", headers=erin_headers).status_code == 200

        disabled = client.post("/admin/users/erin/disable", headers=carol)
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["active"] is False
        assert disabled.json()["api_keys_revoked"] == 1

        assert_problem(refresh(client, erin["refresh_token"]), 401)
        assert_problem(client.get("/orders", headers=erin_headers), 401)
        assert_problem(client.get("/orders", headers=machine), 401)
        refused = client.post(
            "/auth/login", json={"username": "erin", "password": PASSWORDS["erin"]}
        )
        assert_problem(refused, 401)
        # The admin's own tokens are untouched.
        assert client.get("/orders", headers=carol).status_code == 200

    (event,) = audit_records(orders.state_dir, "orders.user.disabled")
    assert event["actor"]["id"] == "carol"
    assert event["details"]["roles"] == ["admin"]


def test_a_deleted_users_refresh_is_refused(orders: OrdersService) -> None:
    with orders.client() as client:
        carol = bearer(client, "carol")
        alice = login(client, "alice")
        deleted = client.delete("/admin/users/alice", headers=carol)
        assert deleted.status_code == 200, deleted.text
        assert_problem(refresh(client, alice["refresh_token"]), 401)
        access = {"Authorization": f"Bearer {alice['access_token']}"}
        assert_problem(client.get("/orders", headers=access), 401)
        refused = client.post(
            "/auth/login", json={"username": "alice", "password": PASSWORDS["alice"]}
        )
        assert_problem(refused, 401)
        assert_problem(client.post("/admin/users/alice/disable", headers=carol), 404)
    (event,) = audit_records(orders.state_dir, "orders.user.deleted")
    assert event["actor"]["id"] == "carol"


def test_admin_routes_are_guarded_and_tenant_scoped(orders: OrdersService) -> None:
    with orders.client() as client:
        carol = bearer(client, "carol")
        # dave is in globex: for an acme admin he does not exist.
        assert_problem(client.post("/admin/users/dave/disable", headers=carol), 404)
        assert_problem(
            client.put("/admin/users/dave/roles", json={"roles": ["viewer"]}, headers=carol), 404
        )
        assert_problem(
            client.put("/admin/users/bob/roles", json={"roles": ["root"]}, headers=carol), 422
        )
        dave = bearer(client, "dave")
        assert_problem(client.post("/admin/users/bob/disable", headers=dave), 403)
        assert_problem(client.post("/admin/users/bob/disable"), 401)
        # dave still works: nothing above changed him.
        assert client.get("/orders", headers=dave).status_code == 200


def test_a_disable_holds_across_replicas_and_restarts(
    fresh_orders: OrdersService, server_starter: ServerStarter
) -> None:
    """Replica B sees A's disable; replica C, started later, does not re-enable by seeding."""

    def replica(name: str) -> httpx.Client:
        port = find_free_port()
        env = {**fresh_orders.env, "SAASFW_HTTP__PORT": str(port)}
        server = server_starter(orders_service_command(), env=env, port=port, name=name)
        return httpx.Client(base_url=server.base_url, timeout=30.0)

    with fresh_orders.client() as a, replica("replica-b") as b:
        bob = login(a, "bob")
        old_access = {"Authorization": f"Bearer {bob['access_token']}"}
        assert b.get("/orders", headers=old_access).status_code == 200
        disabled = a.post("/admin/users/bob/disable", headers=bearer(a, "carol"))
        assert disabled.status_code == 200, disabled.text
        deadline = time.monotonic() + 60  # generous: a busy shared machine
        while b.get("/orders", headers=old_access).status_code != 401:
            assert time.monotonic() < deadline, "replica B still accepts the old token"
            time.sleep(0.05)
        assert_problem(refresh(b, bob["refresh_token"]), 401)

    with replica("replica-c") as c:  # its start-up seeding keeps the disabled row
        refused = c.post("/auth/login", json={"username": "bob", "password": PASSWORDS["bob"]})
        assert_problem(refused, 401)
        assert_problem(c.get("/orders", headers=old_access), 401)
        assert c.get("/orders", headers=bearer(c, "alice")).status_code == 200


def test_refresh_on_another_replica_sees_a_demotion_and_a_deletion(
    fresh_orders: OrdersService, server_starter: ServerStarter
) -> None:
    """Issue 16 acceptance 2: tokens issued by A, the user changed on A, refreshed on B."""
    port = find_free_port()
    env = {**fresh_orders.env, "SAASFW_HTTP__PORT": str(port)}
    other = server_starter(orders_service_command(), env=env, port=port, name="replica-b")
    with fresh_orders.client() as a, httpx.Client(base_url=other.base_url, timeout=30.0) as b:
        carol = bearer(a, "carol")
        set_roles(a, carol, "bob", ["admin"])
        bob = login(a, "bob")
        alice = login(a, "alice")
        assert claims(bob["access_token"])["roles"] == ["admin"]

        set_roles(a, carol, "bob", ["viewer"])
        rotated = refresh(b, bob["refresh_token"])
        assert rotated.status_code == 200, rotated.text
        assert claims(rotated.json()["access_token"])["roles"] == ["viewer"]

        deleted = a.delete("/admin/users/alice", headers=carol)
        assert deleted.status_code == 200, deleted.text
        assert_problem(refresh(b, alice["refresh_token"]), 401)


def find_free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def orders_service_command() -> list[str]:
    return [str(Path(sys.prefix) / "bin" / "orders-service")]
