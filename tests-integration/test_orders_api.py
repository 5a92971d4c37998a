"""The orders example end to end over HTTP against a real uvicorn process.

Runs on SQLite always, and on PostgreSQL + Redis when SAASFW_TEST_POSTGRES_URL and
SAASFW_TEST_REDIS_URL are set (CI sets both).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import OrdersService

PASSWORDS = {
    "alice": "alice-demo-password",
    "bob": "bob-demo-password",
    "carol": "carol-demo-password",
    "dave": "dave-demo-password",
    "erin": "erin-demo-password",
}
PROBLEM = "application/problem+json"


def login(client: httpx.Client, user: str) -> dict[str, Any]:
    response = client.post("/auth/login", json={"username": user, "password": PASSWORDS[user]})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def bearer(client: httpx.Client, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {login(client, user)['access_token']}"}


def new_order(client: httpx.Client, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    body = {
        "customer_email": f"buyer-{uuid.uuid4().hex[:8]}@example.com",
        "sku": "WIDGET-1",
        "quantity": 2,
        "unit_price_cents": 1999,
        "currency": "EUR",
        **overrides,
    }
    response = client.post("/orders", json=body, headers=headers)
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/orders/{order['id']}"
    return order


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


def test_login_refresh_and_refresh_reuse(orders: OrdersService) -> None:
    with orders.client() as client:
        tokens = login(client, "alice")
        assert tokens["token_type"] == "Bearer"
        assert 0 < tokens["expires_in"] <= 900

        rotated = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert rotated.status_code == 200, rotated.text
        fresh = rotated.json()
        assert fresh["access_token"] != tokens["access_token"]
        me = {"Authorization": f"Bearer {fresh['access_token']}"}
        assert client.get("/orders", headers=me).status_code == 200

        # Reusing a spent refresh token revokes the whole family, the new one included.
        reused = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert_problem(reused, 401)
        again = client.post("/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
        assert_problem(again, 401)


def test_bad_credentials_are_401_problems(orders: OrdersService) -> None:
    with orders.client() as client:
        wrong = client.post("/auth/login", json={"username": "alice", "password": "nope"})
        body = assert_problem(wrong, 401)
        assert "nope" not in wrong.text
        assert body["detail"] == "The username or password is not correct."
        unknown = client.post("/auth/login", json={"username": "mallory", "password": "x"})
        assert_problem(unknown, 401)


def test_logout_revokes_the_token_at_once(orders: OrdersService) -> None:
    with orders.client() as client:
        tokens = login(client, "bob")
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert client.get("/orders", headers=headers).status_code == 200
        out = client.post(
            "/auth/logout", headers=headers, json={"refresh_token": tokens["refresh_token"]}
        )
        assert out.status_code == 204, out.text
        assert_problem(client.get("/orders", headers=headers), 401)
        assert_problem(
            client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401
        )


def test_create_list_get_update_conflict_delete(orders: OrdersService) -> None:
    with orders.client() as client:
        alice = bearer(client, "alice")
        order = new_order(client, alice, note="first")
        assert order["version"] == 1
        assert order["status"] == "open"
        assert order["created_by"] == "alice"

        listed = client.get("/orders", headers=alice).json()
        assert order["id"] in [o["id"] for o in listed["items"]]
        assert client.get(f"/orders/{order['id']}", headers=alice).json() == order

        updated = client.patch(
            f"/orders/{order['id']}", json={"version": 1, "status": "paid"}, headers=alice
        )
        assert updated.status_code == 200, updated.text
        assert updated.json()["version"] == 2
        assert updated.json()["status"] == "paid"

        stale = client.patch(
            f"/orders/{order['id']}", json={"version": 1, "status": "shipped"}, headers=alice
        )
        assert_problem(stale, 409)
        current = client.get(f"/orders/{order['id']}", headers=alice).json()
        assert current["status"] == "paid"

        carol = bearer(client, "carol")
        stale_delete = client.delete(f"/orders/{order['id']}?version=1", headers=carol)
        assert_problem(stale_delete, 409)
        deleted = client.delete(f"/orders/{order['id']}?version=2", headers=carol)
        assert deleted.status_code == 204, deleted.text
        assert_problem(client.get(f"/orders/{order['id']}", headers=alice), 404)
        after = client.get("/orders", headers=alice).json()
        assert order["id"] not in [o["id"] for o in after["items"]]


def test_keyset_pages_cover_every_order_once(orders: OrdersService) -> None:
    with orders.client() as client:
        # A tenant of its own would be cleaner; globex belongs to dave in this suite only.
        dave = bearer(client, "dave")
        created = {new_order(client, dave, sku=f"PAGE-{i}")["id"] for i in range(5)}
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = client.get("/orders", params=params, headers=dave).json()
            seen.extend(o["id"] for o in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert created <= set(seen)
        assert len(seen) == len(set(seen))
        hostile = client.get("/orders", params={"limit": "-1"}, headers=dave)
        assert_problem(hostile, 400)
        forged = client.get("/orders", params={"cursor": "not-a-cursor"}, headers=dave)
        assert_problem(forged, 400)


def test_401_403_404_422(orders: OrdersService) -> None:
    with orders.client() as client:
        anonymous = client.get("/orders")
        assert_problem(anonymous, 401)
        assert anonymous.headers["www-authenticate"].lower().startswith("bearer")
        assert_problem(client.get("/orders", headers={"Authorization": "Bearer x.y.z"}), 401)

        bob = bearer(client, "bob")  # viewer
        forbidden = client.post(
            "/orders",
            json={
                "customer_email": "a@example.com",
                "sku": "X",
                "quantity": 1,
                "unit_price_cents": 1,
            },
            headers=bob,
        )
        assert_problem(forbidden, 403)

        alice = bearer(client, "alice")
        order = new_order(client, alice)
        assert_problem(client.delete(f"/orders/{order['id']}?version=1", headers=alice), 403)

        # Another tenant's order does not exist for dave: 404, not 403.
        dave = bearer(client, "dave")
        assert_problem(client.get(f"/orders/{order['id']}", headers=dave), 404)
        assert_problem(
            client.patch(f"/orders/{order['id']}", json={"version": 1}, headers=dave), 404
        )
        assert_problem(client.get(f"/orders/{uuid.uuid4()}", headers=alice), 404)

        invalid = client.post(
            "/orders",
            json={
                "customer_email": "not-an-email",
                "sku": "x",
                "quantity": 0,
                "unit_price_cents": -1,
                "tenant_id": "globex",
            },
            headers=alice,
        )
        problem = assert_problem(invalid, 422)
        fields = {tuple(e["loc"]) for e in problem["errors"]}
        assert ("body", "quantity") in fields
        assert ("body", "tenant_id") in fields  # extra fields are refused, not ignored
        assert_problem(client.get("/orders/not-a-uuid", headers=alice), 422)


def test_api_keys_for_machine_clients(orders: OrdersService) -> None:
    with orders.client() as client:
        carol = bearer(client, "carol")
        created = client.post(
            "/api-keys", json={"name": "billing-sync", "scopes": ["orders:read"]}, headers=carol
        )
        assert created.status_code == 201, created.text
        key = created.json()["key"]
        assert key.startswith("sfw_")
        machine = {"X-API-Key": key}
        assert client.get("/orders", headers=machine).status_code == 200
        no_write = client.post(
            "/orders",
            json={
                "customer_email": "a@example.com",
                "sku": "X",
                "quantity": 1,
                "unit_price_cents": 1,
            },
            headers=machine,
        )
        assert_problem(no_write, 403)
        tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
        assert_problem(client.get("/orders", headers={"X-API-Key": tampered}), 401)
        assert_problem(client.get(f"/orders?api_key={key}"), 401)
        alice = bearer(client, "alice")
        assert_problem(
            client.post("/api-keys", json={"name": "x", "scopes": ["orders:read"]}, headers=alice),
            403,
        )


def test_health_and_metrics_reflect_traffic(orders: OrdersService) -> None:
    with orders.client() as client:
        for probe in ("live", "ready", "startup"):
            response = client.get(f"/health/{probe}")
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "UP"
        ready = client.get("/health/ready").json()
        assert {"database", "audit"} <= set(ready["checks"])

        alice = bearer(client, "alice")
        order = new_order(client, alice)
        for _ in range(3):
            assert client.get(f"/orders/{order['id']}", headers=alice).status_code == 200
        client.get(f"/orders/{uuid.uuid4()}", headers=alice)
        metrics = client.get("/metrics").text
    lines = [ln for ln in metrics.splitlines() if ln.startswith("saasfw_http_requests_total{")]
    by_route = [ln for ln in lines if 'route="/orders/{order_id}"' in ln]
    assert any('status="200"' in ln and 'method="GET"' in ln for ln in by_route), lines
    assert any('status="404"' in ln for ln in by_route), lines
    assert not any(order["id"] in ln for ln in lines)  # route templates, never raw paths
    count = sum(
        float(ln.rsplit(" ", 1)[1])
        for ln in by_route
        if 'status="200"' in ln and 'method="GET"' in ln
    )
    assert count >= 3


def test_correlation_id_is_echoed_and_in_problems(orders: OrdersService) -> None:
    with orders.client() as client:
        response = client.get("/orders", headers={"X-Request-ID": "it-corr-0001"})
        assert response.headers["x-request-id"] == "it-corr-0001"
        assert assert_problem(response, 401).get("correlation_id") in (None, "it-corr-0001")
        forged = client.get("/orders", headers={"X-Request-ID": "bad\tid" * 40})
        assert forged.headers["x-request-id"] != "bad\tid" * 40


@pytest.mark.parametrize("path", ["/docs", "/openapi.json"])
def test_docs_are_served(orders: OrdersService, path: str) -> None:
    with orders.client() as client:
        assert client.get(path).status_code == 200


def test_413_for_oversized_bodies(orders: OrdersService) -> None:
    with orders.client() as client:
        alice = bearer(client, "alice")
        huge = {
            "customer_email": "a@example.com",
            "sku": "X",
            "quantity": 1,
            "unit_price_cents": 1,
            "note": "x" * (2 * 1024 * 1024),
        }
        response = client.post("/orders", json=huge, headers=alice)
        assert_problem(response, 413)


def test_429_with_retry_after_on_a_per_route_limit(orders: OrdersService) -> None:
    with orders.client() as client:
        carol = bearer(client, "carol")
        statuses = []
        for i in range(7):  # the limit is 5/minute per principal
            response = client.post(
                "/api-keys", json={"name": f"burst-{i}", "scopes": ["orders:read"]}, headers=carol
            )
            statuses.append(response.status_code)
            if response.status_code == 429:
                problem = assert_problem(response, 429)
                assert int(response.headers["retry-after"]) >= 1
                assert "ratelimit" in {k.lower() for k in response.headers}
                assert "detail" in problem
                break
        assert statuses[-1] == 429, statuses
        assert set(statuses[:-1]) == {201}, statuses


def test_security_headers_on_every_answer(orders: OrdersService) -> None:
    with orders.client() as client:
        for response in (client.get("/orders"), client.get("/openapi.json")):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert "content-security-policy" in response.headers
            assert "strict-transport-security" not in response.headers  # plain HTTP here
        preflight = client.options(
            "/orders",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
        assert "access-control-allow-origin" not in preflight.headers


def test_auditors_search_their_tenants_trail(orders: OrdersService) -> None:
    import time

    with orders.client() as client:
        alice = bearer(client, "alice")
        email = f"audited-{uuid.uuid4().hex[:8]}@example.com"
        order = new_order(client, alice, customer_email=email)
        erin = bearer(client, "erin")  # auditor of acme
        params = {"resource_id": order["id"], "type": "orders.order.created"}
        items: list[dict[str, Any]] = []
        for _ in range(100):  # the SQL sink is written in batches, off the request path
            found = client.get("/audit/events", params=params, headers=erin)
            assert found.status_code == 200, found.text
            items = found.json()["items"]
            if items:
                break
            time.sleep(0.05)
        assert len(items) == 1, items
        event = items[0]
        assert event["actor"]["id"] == "alice"
        assert email not in json.dumps(event)  # encrypted unless asked for in clear
        clear = client.get(
            "/audit/events", params={**params, "decrypt": "true"}, headers=erin
        ).json()["items"]
        assert clear[0]["details"]["customer_email"] == email

        # Other tenants see nothing of acme's trail; non-auditors see nothing at all.
        assert_problem(client.get("/audit/events", headers=alice), 403)
        dave = bearer(client, "dave")
        assert_problem(client.get("/audit/events", headers=dave), 403)
