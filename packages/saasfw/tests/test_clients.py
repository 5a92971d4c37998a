"""Downstream service clients against a real HTTP server: retries, breaker, propagation."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from saasfw.app import (
    CircuitBreaker,
    CircuitOpenError,
    ClientSettings,
    ComponentSwitches,
    ServiceClient,
    ServiceClients,
    ServiceSettings,
    UnknownServiceError,
    create_app,
    service_clients,
)
from saasfw.app._observability import observability_settings
from saasfw.observability import setup_observability
from saasfw.security import public


class Downstream:
    """A real uvicorn server whose next answers are scripted per path."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.script: dict[str, list[int]] = {}
        self.headers: list[dict[str, str]] = []
        self.app = FastAPI()

        @self.app.api_route("/{path:path}", methods=["GET", "POST", "PUT"])
        async def answer(path: str, request: Request) -> Any:
            self.calls[path] = self.calls.get(path, 0) + 1
            self.headers.append(dict(request.headers))
            statuses = self.script.get(path) or [200]
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            if path == "slow":
                await asyncio.sleep(1.0)
            from fastapi.responses import JSONResponse

            return JSONResponse({"path": path, "n": self.calls[path]}, status_code=status)

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Downstream:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    with Downstream() as server:
        yield server


def settings_for(url: str, **overrides: Any) -> ClientSettings:
    values: dict[str, Any] = {"base_url": url, "retries": 2, "backoff": 0.01, "backoff_max": 0.05}
    values.update(overrides)
    return ClientSettings(**values)


async def test_idempotent_calls_are_retried_with_backoff(downstream: Downstream) -> None:
    downstream.script["flaky"] = [503, 502, 200]
    client = ServiceClient("flaky", settings_for(downstream.url))
    try:
        response = await client.request("GET", "/flaky")
    finally:
        await client.aclose()
    assert response.status_code == 200
    assert downstream.calls["flaky"] == 3


async def test_non_idempotent_calls_are_never_repeated(downstream: Downstream) -> None:
    downstream.script["pay"] = [503, 200]
    client = ServiceClient("pay", settings_for(downstream.url))
    try:
        response = await client.request("POST", "/pay", json={"amount": 1})
    finally:
        await client.aclose()
    assert response.status_code == 503
    assert downstream.calls["pay"] == 1


async def test_timeouts_are_retried_then_raised(downstream: Downstream) -> None:
    client = ServiceClient("slow", settings_for(downstream.url, timeout=0.2, retries=1))
    try:
        with pytest.raises(httpx.TimeoutException):
            await client.request("GET", "/slow")
    finally:
        await client.aclose()
    assert downstream.calls["slow"] == 2


async def test_the_breaker_opens_fails_fast_and_recovers(downstream: Downstream) -> None:
    downstream.script["down"] = [503, 503, 503, 503, 200]
    settings = settings_for(downstream.url, retries=0, breaker_failures=3, breaker_reset=0.3)
    client = ServiceClient("down", settings)
    try:
        for _ in range(3):
            assert (await client.request("GET", "/down")).status_code == 503
        assert client.breaker.state == "open"
        with pytest.raises(CircuitOpenError) as refused:
            await client.request("GET", "/down")
        assert refused.value.retry_after >= 1
        assert downstream.calls["down"] == 3  # refused without a request
        await asyncio.sleep(0.35)
        assert client.breaker.state == "half-open"
        assert (await client.request("GET", "/down")).status_code == 503  # the trial fails
        assert client.breaker.state == "open"
        await asyncio.sleep(0.35)
        assert (await client.request("GET", "/down")).status_code == 200
        assert client.breaker.state == "closed"
    finally:
        await client.aclose()


def test_breaker_state_machine_without_io() -> None:
    breaker = CircuitBreaker("x", failures=2, reset=60)
    breaker.record(ok=False)
    breaker.before_call()
    breaker.record(ok=False)
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    breaker.record(ok=True)
    assert breaker.state == "closed"


def test_unknown_services_name_the_missing_setting() -> None:
    clients = ServiceClients({})
    with pytest.raises(UnknownServiceError, match="SAASFW_CLIENTS__BILLING__BASE_URL"):
        clients.get("billing")


async def test_calls_from_a_request_propagate_ids_and_the_credential(
    downstream: Downstream, tmp_path: Path
) -> None:
    settings = ServiceSettings(
        service="upstream",
        env="test",
        data_dir=tmp_path,
        components=ComponentSwitches(database=False, audit=False),
        clients={
            "billing": settings_for(downstream.url, api_key=SecretStr("sfw_service_credential"))
        },
    )
    router = APIRouter(dependencies=[Depends(public)])

    @router.get("/proxy")
    async def proxy(
        clients: Annotated[ServiceClients, Depends(service_clients)],
    ) -> dict[str, Any]:
        response = await clients.get("billing").request("GET", "/echo")
        return {"status": response.status_code}

    @router.get("/breaker")
    async def breaker(
        clients: Annotated[ServiceClients, Depends(service_clients)],
    ) -> dict[str, Any]:
        client = clients.get("billing")
        for _ in range(client.settings.breaker_failures):
            client.breaker.record(ok=False)
        await client.request("GET", "/echo")
        return {}

    obs = setup_observability(
        observability_settings(settings), registry=CollectorRegistry(), logging=False
    )
    app = create_app(settings, routers=[router], observability=obs)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        answer = await client.get("/proxy", headers={"X-Request-ID": "upstream-req-0001"})
        assert answer.json() == {"status": 200}
        sent = downstream.headers[-1]
        assert sent["x-request-id"] == "upstream-req-0001"
        assert sent["traceparent"].startswith("00-")
        assert sent["x-api-key"] == "sfw_service_credential"
        refused = await client.get("/breaker")
        assert refused.status_code == 503
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert "billing" in refused.json()["detail"]
