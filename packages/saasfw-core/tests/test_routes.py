from typing import Any

import httpx
from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from saasfw.core import UNMATCHED_ROUTE, route_template


def _recording(app: Any, seen: list[str]) -> Any:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        await app(scope, receive, send)
        if scope["type"] == "http":
            seen.append(route_template(scope, root))

    return middleware


async def test_nested_routers_mounts_and_unmatched_paths() -> None:
    app = FastAPI()
    items = APIRouter(prefix="/items")

    @items.get("/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    v1 = APIRouter(prefix="/v1")
    v1.include_router(items)
    app.include_router(v1)

    async def legacy(request: Any) -> PlainTextResponse:
        return PlainTextResponse("old")

    app.mount("/legacy", Starlette(routes=[Route("/things/{name}", legacy)]))
    seen: list[str] = []
    transport = httpx.ASGITransport(app=_recording(app, seen))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/v1/items/7")).status_code == 200
        assert (await client.get("/legacy/things/x")).status_code == 200
        assert (await client.get("/nowhere/at/all")).status_code == 404
    assert seen == ["/v1/items/{item_id}", "/legacy/things/{name}", UNMATCHED_ROUTE]
