"""RED metrics: bounded route labels, exact counts, in-flight, exposition, multiprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from saasfw.observability import (
    MetricsApp,
    Observability,
    ObservabilityConfigError,
    ObservabilityMiddleware,
    ObservabilitySettings,
    RedMetrics,
    red_metrics,
)


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")  # type: ignore[arg-type]


def _app(observability: Observability) -> FastAPI:
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    observability.install(app)
    return app


async def test_a_thousand_distinct_paths_make_one_route_label(
    make_observability: Callable[..., Observability],
) -> None:
    app = _app(make_observability())
    async with _client(app) as client:
        for n in range(1000):
            response = await client.get(f"/items/{n}")
            assert response.status_code == 200
        exposition = (await client.get("/metrics")).text

    counts = _samples(exposition, "saasfw_http_requests_total")
    assert counts == [({"method": "GET", "route": "/items/{item_id}", "status": "200"}, 1000.0)]
    routes = {
        labels["route"]
        for labels, _ in _samples(exposition, "saasfw_http_request_duration_seconds_count")
    }
    assert routes == {"/items/{item_id}"}
    histogram = _samples(exposition, "saasfw_http_request_duration_seconds_count")
    assert histogram == [({"method": "GET", "route": "/items/{item_id}", "status": "200"}, 1000.0)]
    assert "/items/7" not in exposition


async def test_unmatched_paths_share_one_label_and_methods_cannot_mint_labels(
    make_observability: Callable[..., Observability],
) -> None:
    app = _app(make_observability())
    async with _client(app) as client:
        for n in range(50):
            assert (await client.get(f"/random/{n}")).status_code == 404
        assert (await client.post("/items/1")).status_code == 405
        assert (await client.request("BREW", "/items/1")).status_code == 405
        assert (await client.get("/items/x")).status_code == 422
        exposition = (await client.get("/metrics")).text

    counts = {
        tuple(sorted(labels.items())): value
        for labels, value in _samples(exposition, "saasfw_http_requests_total")
    }
    assert counts == {
        (("method", "GET"), ("route", "<unmatched>"), ("status", "404")): 50.0,
        (("method", "POST"), ("route", "/items/{item_id}"), ("status", "405")): 1.0,
        (("method", "_OTHER"), ("route", "/items/{item_id}"), ("status", "405")): 1.0,
        (("method", "GET"), ("route", "/items/{item_id}"), ("status", "422")): 1.0,
    }


async def test_templates_include_router_prefixes_and_mounts(
    make_observability: Callable[..., Observability],
) -> None:
    app = FastAPI(telemetry={"tracing": False})
    outer = APIRouter(prefix="/api")
    inner = APIRouter(prefix="/v2")

    @inner.get("/orders/{order_id}")
    async def order(order_id: str) -> dict[str, str]:
        return {"id": order_id}

    outer.include_router(inner)
    app.include_router(outer)

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    app.mount("/legacy", Starlette(routes=[Route("/hello/{name}", hello)]))
    app.mount("/raw", PlainTextResponse("raw"))
    make_observability().install(app)

    async with _client(app) as client:
        assert (await client.get("/api/v2/orders/9")).status_code == 200
        assert (await client.get("/legacy/hello/ann")).status_code == 200
        assert (await client.get("/raw/anything/at/all")).status_code == 200
        exposition = (await client.get("/metrics")).text

    routes = {labels["route"] for labels, _ in _samples(exposition, "saasfw_http_requests_total")}
    assert routes == {"/api/v2/orders/{order_id}", "/legacy/hello/{name}", "/raw/{path}"}


async def test_excluded_paths_are_not_counted(
    make_observability: Callable[..., Observability],
) -> None:
    settings = ObservabilitySettings(excluded_paths=("/metrics", "/healthz"))
    app = _app(make_observability(settings))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async with _client(app) as client:
        for _ in range(3):
            assert (await client.get("/healthz")).status_code == 200
            await client.get("/metrics")
        exposition = (await client.get("/metrics")).text
    assert _samples(exposition, "saasfw_http_requests_total") == []


async def test_in_flight_counts_a_request_under_its_route_while_it_runs(
    make_observability: Callable[..., Observability],
) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/slow/{n}")
    async def slow(n: int) -> dict[str, int]:
        entered.set()
        await release.wait()
        return {"n": n}

    make_observability().install(app)
    async with _client(app) as client:
        pending = asyncio.gather(*(client.get(f"/slow/{n}") for n in range(3)))
        await entered.wait()
        await asyncio.sleep(0.01)
        during = (await client.get("/metrics")).text
        release.set()
        await pending
        after = (await client.get("/metrics")).text

    assert _samples(during, "saasfw_http_requests_in_flight") == [
        ({"method": "GET", "route": "/slow/{n}"}, 3.0)
    ]
    assert _samples(after, "saasfw_http_requests_in_flight") == [
        ({"method": "GET", "route": "/slow/{n}"}, 0.0)
    ]


async def test_a_failing_endpoint_is_counted_as_500(
    make_observability: Callable[..., Observability], registry: CollectorRegistry
) -> None:
    app = FastAPI(telemetry={"tracing": False})

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    make_observability().install(app)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        assert (await client.get("/boom")).status_code == 500
    labels = {"method": "GET", "route": "/boom", "status": "500"}
    assert registry.get_sample_value("saasfw_http_requests_total", labels) == 1.0


def test_one_registry_has_one_set_of_metrics() -> None:
    registry = CollectorRegistry()
    assert red_metrics(registry) is red_metrics(registry)
    with pytest.raises(ObservabilityConfigError) as raised:
        red_metrics(registry, buckets=(0.1, 1.0))
    assert raised.value.setting == "metrics.buckets"
    assert red_metrics(CollectorRegistry()) is not red_metrics(registry)


async def test_metrics_endpoint_negotiates_format_and_methods() -> None:
    registry = CollectorRegistry()
    metrics = RedMetrics(registry)
    metrics.request_finished({}, "GET", "/x", 200, 0.01)
    app = MetricsApp(registry, metrics=metrics)
    async with _client(app) as client:
        text = await client.get("/", headers={"accept": "text/plain"})
        assert text.status_code == 200
        assert text.headers["content-type"].startswith("text/plain")
        assert 'saasfw_http_requests_total{method="GET",route="/x",status="200"} 1.0' in text.text
        openmetrics = await client.get("/", headers={"accept": "application/openmetrics-text"})
        assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
        assert openmetrics.text.endswith("# EOF\n")
        head = await client.head("/")
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["content-length"]) == len(text.content)
        post = await client.post("/")
        assert post.status_code == 405
        assert post.headers["allow"] == "GET, HEAD"


async def test_middleware_without_metrics_or_tracing_still_serves() -> None:
    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/", hello)])
    app.add_middleware(ObservabilityMiddleware)
    async with _client(app) as client:
        response = await client.get("/")
    assert response.text == "hi"
    assert "x-request-id" not in response.headers


def test_multiprocess_mode_aggregates_workers(tmp_path: Path) -> None:
    """Two worker processes record; a third renders /metrics from the shared directory."""
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)}
    worker = textwrap.dedent(
        """
        import asyncio
        from saasfw.observability import red_metrics
        metrics = red_metrics()
        assert metrics.multiprocess
        for _ in range(5):
            metrics.request_finished({}, "GET", "/items/{item_id}", 200, 0.02)
        scope = {"type": "http", "root_path": ""}
        metrics.request_started(scope, "GET")
        metrics.sync_in_flight()
        """
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", worker], env=env, check=True, timeout=60)
    render = textwrap.dedent(
        """
        import asyncio, httpx
        from saasfw.observability import MetricsApp
        async def main():
            transport = httpx.ASGITransport(app=MetricsApp())
            async with httpx.AsyncClient(transport=transport, base_url="http://m") as c:
                print((await c.get("/")).text)
        asyncio.run(main())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", render],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert _samples(out, "saasfw_http_requests_total") == [
        ({"method": "GET", "route": "/items/{item_id}", "status": "200"}, 10.0)
    ]
    assert _samples(out, "saasfw_http_request_duration_seconds_count") == [
        ({"method": "GET", "route": "/items/{item_id}", "status": "200"}, 10.0)
    ]
    # livesum: both workers' in-flight values (1 each, still "alive": their pid files remain)
    in_flight = {
        labels["route"]: value for labels, value in _samples(out, "saasfw_http_requests_in_flight")
    }
    assert in_flight["<unmatched>"] == 2.0
