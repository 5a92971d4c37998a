"""Both example services in one process on the memory bus: the totals follow the orders.

No broker and no server: the two apps run their lifespans in this process (as
``examples/dev_pair.py`` does) and are called through httpx's ASGI transport. The real
brokers and processes are the integration suite's (``tests-integration/test_messaging_*``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from orders_service._app import CONFIG_DIR as ORDERS_CONFIG
from orders_service._app import build_app as build_orders
from orders_service._settings import OrdersSettings
from projections_service._app import CONFIG_DIR, SERVICE, build_app
from projections_service._projector import (
    OrderStateV1,
    TenantMismatch,
    apply_state,
)
from projections_service._settings import ProjectionsSettings
from projections_service._tables import customer_totals, projected_orders, projection_log
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from saasfw.app import database, load_settings, singletons_of
from saasfw.db import ConflictError
from saasfw.messaging import CloudEvent, Received


@dataclass
class Running:
    orders: httpx.AsyncClient
    totals: httpx.AsyncClient
    orders_app: Any
    projections_app: Any


def _environments(tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    jwt = base64.b64encode(secrets.token_bytes(32)).decode()
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    shared = {
        "SAASFW_ENV": "test",
        "SAASFW_DATA_DIR": str(tmp_path),
        "SAASFW_MESSAGING__DESTINATION": f"test.{uuid.uuid4().hex[:8]}",
        "SAASFW_MESSAGING__RETRY_BACKOFF": "0.1",
        "SAASFW_MESSAGING__RELAY__POLL_INTERVAL": "0.1",
        "SAASFW_SECURITY__JWT__HMAC_SECRET": jwt,
        "SAASFW_LIMITS__LOGIN": "6000/minute",
        # One process, one prometheus-client registry, where the messaging metrics can be
        # registered once: these apps are built again by every test.
        "SAASFW_OBSERVABILITY__METRICS__ENABLED": "false",
    }
    orders = {
        **shared,
        "SAASFW_COMPONENTS__MESSAGING": "true",
        "SAASFW_MESSAGING__SIGNING_KEY_ID": "k1",
        "SAASFW_MESSAGING__SIGNING_KEY": key,
    }
    projections = {
        **shared,
        "SAASFW_MESSAGING__VERIFICATION_KEYS": json.dumps(
            {"/services/orders-service": {"k1": key}}
        ),
    }
    return orders, projections


@asynccontextmanager
async def _running(tmp_path: Path) -> AsyncIterator[Running]:
    orders_env, projections_env = _environments(tmp_path)
    orders_settings = load_settings(
        OrdersSettings, service="orders-service", config_dir=ORDERS_CONFIG, environ=orders_env
    ).settings
    settings = load_settings(
        ProjectionsSettings, service=SERVICE, config_dir=CONFIG_DIR, environ=projections_env
    ).settings
    orders_app, projections_app = build_orders(orders_settings), build_app(settings)
    async with AsyncExitStack() as stack:
        # One after the other: Alembic's migration context is process-wide.
        await stack.enter_async_context(orders_app.router.lifespan_context(orders_app))
        await stack.enter_async_context(projections_app.router.lifespan_context(projections_app))
        orders = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=orders_app), base_url="http://o")
        )
        totals = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=projections_app), base_url="http://p"
            )
        )
        yield Running(orders, totals, orders_app, projections_app)


async def _token(client: httpx.AsyncClient, user: str) -> dict[str, str]:
    response = await client.post(
        "/auth/login", json={"username": user, "password": f"{user}-demo-password"}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _until(condition: Callable[[], Awaitable[Any]], limit: float = 30.0) -> Any:
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        value = await condition()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


async def _rows(app: Any, query: Any) -> list[dict[str, Any]]:
    async with singletons_of(app).get(database).engine.connect() as connection:
        return [dict(r) for r in (await connection.execute(query)).mappings()]


async def _create(client: httpx.AsyncClient, auth: dict[str, str], email: str, qty: int) -> Any:
    response = await client.post(
        "/orders",
        json={"customer_email": email, "sku": "W-1", "quantity": qty, "unit_price_cents": 100},
        headers={**auth, "X-Request-ID": f"req-{email.split('@')[0]}-{qty}"},
    )
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.asyncio
async def test_totals_follow_created_updated_and_deleted_orders(tmp_path: Path) -> None:
    async with _running(tmp_path) as run:
        alice, carol = await _token(run.orders, "alice"), await _token(run.orders, "carol")
        first = await _create(run.orders, alice, "x@example.com", 1)
        await _create(run.orders, alice, "x@example.com", 2)
        other = await _create(run.orders, alice, "y@example.com", 5)
        changed = await run.orders.patch(
            f"/orders/{first['id']}", json={"version": 1, "quantity": 4}, headers=alice
        )
        assert changed.status_code == 200, changed.text
        deleted = await run.orders.delete(
            f"/orders/{other['id']}", params={"version": 1}, headers=carol
        )
        assert deleted.status_code == 204, deleted.text

        async def settled() -> list[dict[str, Any]]:
            rows = await _rows(run.projections_app, select(projection_log))
            return rows if len(rows) >= 5 else []

        log = await _until(settled)
        listed = await run.totals.get("/customer-totals", headers=alice)
        audited = text(
            "SELECT actor_id, correlation_id, resource_id FROM audit_events "
            "WHERE type = 'projections.customer_totals.updated'"
        )

        async def all_audited() -> list[dict[str, Any]]:
            rows = await _rows(run.projections_app, audited)
            return rows if len(rows) >= 5 else []

        audit = await _until(all_audited)
        dave = await run.totals.get("/customer-totals", headers=await _token(run.orders, "dave"))
        anonymous = await run.totals.get("/customer-totals")
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == [
        {"customer_email": "x@example.com", "currency": "EUR", "order_count": 2, "total_cents": 600}
    ]
    assert [r["outcome"] for r in log] == ["applied"] * 5
    first_log = [r["sequence"] for r in log if r["order_id"] == first["id"]]
    assert first_log == [1, 2]  # created, then updated: the per-order sequence
    assert {r["actor"] for r in log} == {"alice", "carol"}
    assert any(
        r["resource_id"] == first["id"] and r["correlation_id"] == "req-x-1" for r in audit
    ), audit
    assert len(audit) == 5  # one audit record per applied event
    assert {r["actor_id"] for r in audit} == {"alice", "carol"}
    assert dave.json()["items"] == []  # another tenant's customers are not listed
    assert anonymous.status_code == 401


def _received(data: OrderStateV1, *, tenant: str | None) -> Received[OrderStateV1]:
    event = CloudEvent.create(
        "orders.order.created.v1", data, source="/services/orders-service", tenant=tenant
    )
    return Received(event=event, data=data, attempt=1)


@pytest.mark.asyncio
async def test_an_older_version_is_skipped_and_another_tenant_is_refused(tmp_path: Path) -> None:
    state = {
        "order_id": "o-1",
        "customer_email": "z@example.com",
        "quantity": 3,
        "unit_price_cents": 10,
        "currency": "EUR",
    }
    async with _running(tmp_path) as run:
        sessions = singletons_of(run.projections_app).get(database).session_factory

        async def apply(received: Received[OrderStateV1]) -> None:
            # The app's relays and jobs write too: SQLite answers "locked" now and then,
            # which the consumer retries; so does this test.
            for _ in range(50):
                try:
                    async with sessions.begin() as session:
                        await apply_state(received, session, None)
                    return
                except (ConflictError, OperationalError):
                    await asyncio.sleep(0.05)
            raise AssertionError("the database stayed locked")

        await apply(_received(OrderStateV1(**state, version=2), tenant="acme"))
        older = OrderStateV1(**{**state, "quantity": 99}, version=1)
        await apply(_received(older, tenant="acme"))
        with pytest.raises(TenantMismatch):
            await apply(_received(OrderStateV1(**state, version=3), tenant="globex"))
        totals = await _rows(run.projections_app, select(customer_totals))
        log = await _rows(run.projections_app, select(projection_log))
    assert [(t["order_count"], t["total_cents"]) for t in totals] == [(1, 30)]
    assert [r["outcome"] for r in log] == ["applied", "stale"]


@pytest.mark.asyncio
async def test_an_erased_customer_is_forgotten_here_too_even_by_a_late_event(
    tmp_path: Path,
) -> None:
    async with _running(tmp_path) as run:
        alice, carol = await _token(run.orders, "alice"), await _token(run.orders, "carol")
        await _create(run.orders, alice, "gone@example.com", 1)
        await _create(run.orders, alice, "gone@example.com", 3)
        await _create(run.orders, alice, "kept@example.com", 2)

        async def projected() -> list[dict[str, Any]]:
            rows = await _rows(run.projections_app, select(customer_totals))
            return rows if sum(r["order_count"] for r in rows) == 3 else []

        assert await _until(projected)
        erased = await run.orders.post(
            "/admin/customers/erasure", json={"customer_email": "Gone@example.com"}, headers=carol
        )
        assert erased.status_code == 200, erased.text
        assert erased.json()["orders_scrubbed"] == 2

        async def forgotten() -> list[dict[str, Any]]:
            rows = await _rows(run.projections_app, select(customer_totals))
            return rows if all(r["customer_email"] != "gone@example.com" for r in rows) else []

        totals = await _until(forgotten)
        query = text(
            "SELECT details, resource_type FROM audit_events "
            "WHERE details LIKE '%orders.customer.erased%'"
        )

        async def audited() -> list[dict[str, Any]]:
            return await _rows(run.projections_app, query)

        audit = await _until(audited)  # the relay delivers the staged event
        # An event made before the erasure but delivered after it (another ordering key)
        # does not bring the address back.
        late = OrderStateV1(
            order_id="late-1",
            customer_email="gone@example.com",
            quantity=1,
            unit_price_cents=50,
            currency="EUR",
            version=1,
        )
        factory = singletons_of(run.projections_app).get(database).session_factory
        async with factory() as session, session.begin():
            await apply_state(_received(late, tenant="acme"), session, None)
        after = await _rows(run.projections_app, select(customer_totals))
        orders = await _rows(run.projections_app, select(projected_orders))
        log = await _rows(run.projections_app, select(projection_log))
    by_customer = {(r["customer_email"], r["order_count"], r["total_cents"]) for r in totals}
    assert by_customer == {("<erased>", 2, 400), ("kept@example.com", 1, 200)}
    assert {(r["customer_email"], r["order_count"], r["total_cents"]) for r in after} == {
        ("<erased>", 3, 450),
        ("kept@example.com", 1, 200),
    }
    assert "gone@example.com" not in {r["customer_email"].lower() for r in orders}
    assert [r["event_type"] for r in log].count("orders.customer.erased.v1") == 1
    assert [r["resource_type"] for r in audit] == ["customer"]  # audited here too...
    assert all("gone@" not in str(r) for r in log + audit)  # ...and the address is in no row
