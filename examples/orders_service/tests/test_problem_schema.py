"""One problem schema in the composed example, whichever package or layer refuses (issue 20).

Every problem answer (400, 401, 403, 404, 405, 409, 413, 422, 429, 431, 500, 503) has the
same members, the same ``type`` scheme and a dotted ``code``, and carries the request's
correlation id and path. Each status is produced the way a client meets it: the request
limits, authentication, RBAC, the database, FastAPI's validation and routing, the rate
limiter; 500 and 503 come from a route added for the test.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends
from orders_service._app import CONFIG_DIR, SERVICE, build_app
from orders_service._settings import OrdersSettings

from saasfw.app import PROBLEM_CONTENT_TYPE, load_settings
from saasfw.db import DatabaseUnavailableError
from saasfw.security import public

MEMBERS = {"type", "title", "status", "code", "detail", "instance", "correlation_id"}
CODE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        OrdersSettings,
        service=SERVICE,
        env="test",
        config_dir=CONFIG_DIR,
        environ={
            "SAASFW_DATA_DIR": str(tmp_path),
            "SAASFW_LIMITS__API_KEYS": "1/hour",
            "SAASFW_SECURITY__REQUEST_LIMITS__MAX_BODY_BYTES": "4096",
        },
    ).settings
    app = build_app(settings)
    failing = APIRouter(prefix="/test-failures", dependencies=[Depends(public)])

    @failing.get("/crash")
    async def crash() -> None:
        raise RuntimeError("an internal detail that must not leak")

    @failing.get("/database-down")
    async def database_down() -> None:
        raise DatabaseUnavailableError("the database went away")

    app.include_router(failing)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://orders") as made,
    ):
        yield made


async def _token(client: httpx.AsyncClient, user: str) -> dict[str, str]:
    response = await client.post(
        "/auth/login", json={"username": user, "password": f"{user}-demo-password"}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _check(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body: dict[str, Any] = response.json()
    assert set(body) >= MEMBERS, body
    assert body["status"] == status
    assert CODE.match(body["code"]), body["code"]
    assert body["type"] == f"urn:saasfw:problem:{body['code']}"
    assert body["instance"] == response.request.url.path
    assert body["correlation_id"] == response.headers["x-request-id"]
    return body


async def test_every_status_speaks_one_problem_dialect(client: httpx.AsyncClient) -> None:
    clerk = await _token(client, "alice")
    viewer = await _token(client, "bob")
    order = {
        "customer_email": "buyer@example.com",
        "sku": "WIDGET-1",
        "quantity": 1,
        "unit_price_cents": 100,
    }
    created = await client.post("/orders", json=order, headers=clerk)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]

    codes = {
        400: _check(
            await client.post(
                "/orders", content=b"{}", headers={**clerk, "Content-Length": "lots"}
            ),
            400,
        ),
        401: _check(await client.get("/orders"), 401),
        403: _check(await client.post("/orders", json=order, headers=viewer), 403),
        404: _check(await client.get(f"/orders/{uuid.uuid4()}", headers=clerk), 404),
        405: _check(await client.put("/orders", json=order, headers=clerk), 405),
        409: _check(
            await client.patch(
                f"/orders/{order_id}", json={"version": 7, "quantity": 2}, headers=clerk
            ),
            409,
        ),
        413: _check(await client.post("/orders", content=b"x" * 10_000, headers=clerk), 413),
        422: _check(await client.post("/orders", json={"sku": 3}, headers=clerk), 422),
        431: _check(await client.get("/orders", headers={"X-Big": "y" * 40_000}), 431),
        500: _check(await client.get("/test-failures/crash"), 500),
        503: _check(await client.get("/test-failures/database-down"), 503),
    }
    admin = await _token(client, "carol")
    refused = None
    for _ in range(3):
        response = await client.post("/api-keys", json={"name": "ci"}, headers=admin)
        if response.status_code == 429:
            refused = response
            break
    assert refused is not None, "the 1/hour API-key limit never refused"
    codes[429] = _check(refused, 429)
    assert "internal detail" not in str(codes[500])
    assert {status: body["code"] for status, body in codes.items()} == {
        400: "request.invalid_content_length",
        401: "auth.required",
        403: "auth.forbidden",
        404: "db.not_found",
        405: "http.method_not_allowed",
        409: "db.stale_version",
        413: "request.body_too_large",
        422: "http.unprocessable_entity",
        429: "ratelimit.exceeded",
        431: "request.headers_too_large",
        500: "http.internal_server_error",
        503: "db.database_unavailable",
    }


async def test_a_405_allows_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    refused = await client.put("/orders")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, POST"
    one = await client.post(f"/orders/{uuid.uuid4()}")
    assert one.headers["allow"] == "DELETE, GET, PATCH"


async def test_the_probes_errors_carry_the_correlation_id_too(client: httpx.AsyncClient) -> None:
    # Probes answer before the correlation-id middleware: they take the id themselves.
    unknown = _check(await client.get("/health/nope"), 404)
    posted = await client.post("/health/ready", headers={"X-Request-ID": "probe-42"})
    assert _check(posted, 405)["correlation_id"] == "probe-42"
    assert posted.headers["allow"] == "GET, HEAD"
    forged = await client.post("/health/ready", headers={"X-Request-ID": "bad id\tline"})
    assert _check(forged, 405)["correlation_id"] != "bad id\tline"  # replaced, not echoed
    assert len(unknown["correlation_id"]) == 32
