"""The adapter over FastAPI's private request-telemetry record (``_fastapi_internals``): with
the installed FastAPI's record, and without it (FastAPI before native telemetry, or the name
gone), the middleware names nested routes and mounts the same way.

CI runs this file twice (scripts/check_adapters.py): at the locked, newest versions and at
the lowest versions the pyproject ranges allow (FastAPI 0.115 has no such record, so there
the fallback is what runs).
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from types import ModuleType, SimpleNamespace

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from saasfw.observability import ObservabilityMiddleware
from saasfw.observability._fastapi_internals import request_telemetry_factory

_PRIVATE_MODULE = "fastapi.telemetry._api"


def _fastapi_has_the_record() -> bool:
    try:
        module = __import__(_PRIVATE_MODULE, fromlist=["_RequestTelemetry"])
    except ImportError:
        return False
    return hasattr(module, "_RequestTelemetry")


def test_the_installed_fastapi_record_is_used_when_it_exists() -> None:
    factory = request_telemetry_factory()
    if not _fastapi_has_the_record():
        assert factory is None  # e.g. FastAPI 0.115: the scope-based fallback applies
        return
    assert factory is not None
    record = factory("GET")
    assert type(record).__name__ == "_RequestTelemetry"
    assert getattr(record, "route", "missing") is None


class _NeedsOtherFields:
    def __init__(self, *, span: object, method: str) -> None:
        self.route = None


class _NoRoute:
    def __init__(self, *, span: object, span_method: str, data: object) -> None:
        pass


def test_a_missing_or_changed_record_yields_no_factory() -> None:
    assert request_telemetry_factory(SimpleNamespace()) is None
    assert request_telemetry_factory(SimpleNamespace(_RequestTelemetry=_NeedsOtherFields)) is None
    assert request_telemetry_factory(SimpleNamespace(_RequestTelemetry=_NoRoute)) is None


def _app(provider: TracerProvider) -> FastAPI:
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
    app.add_middleware(ObservabilityMiddleware, tracer_provider=provider)
    return app


async def _routes_named() -> set[str]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    transport = httpx.ASGITransport(app=_app(provider))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        assert (await client.get("/api/v2/orders/9")).status_code == 200
        assert (await client.get("/legacy/hello/ann")).status_code == 200
        assert (await client.get("/nowhere")).status_code == 404
    return {
        str(dict(span.attributes or {}).get("http.route"))
        for span in exporter.get_finished_spans()
        if span.kind is SpanKind.SERVER
    }


_NESTED = {"/api/v2/orders/{order_id}", "None"}
_MOUNTED = "/legacy/hello/{name}"


def _starlette_records_routes() -> bool:
    """Starlette 1.7+ records the matched route of a plain Starlette router in the scope."""
    parts = version("starlette").split(".")
    return (int(parts[0]), int(parts[1])) >= (1, 7)


async def test_nested_routes_are_named_with_the_installed_fastapi() -> None:
    named = await _routes_named()
    assert named >= _NESTED
    if _fastapi_has_the_record() or _starlette_records_routes():
        assert named == {*_NESTED, _MOUNTED}
    else:
        # Before both: a route inside a mounted plain-Starlette app is counted under its
        # mount (bounded, coarser). Needs starlette>=1.7 or FastAPI's record to name it.
        assert named == {*_NESTED, "/legacy/{path}"}


async def test_nested_routes_are_named_the_same_without_the_private_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # FastAPI's private module as a release without the record would have it: the adapter
    # finds no class, the middleware adds nothing, the scope-based resolution names routes.
    monkeypatch.setitem(sys.modules, _PRIVATE_MODULE, ModuleType(_PRIVATE_MODULE))
    assert request_telemetry_factory() is None
    named = await _routes_named()
    mounted = _MOUNTED if _starlette_records_routes() else "/legacy/{path}"
    assert named == {*_NESTED, mounted}
