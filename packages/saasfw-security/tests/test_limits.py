from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from saasfw.security._limits import RequestLimitsMiddleware, RequestLimitsSettings

SETTINGS = RequestLimitsSettings(max_body_bytes=1_000, max_header_bytes=2_000, max_header_count=30)


def _app(settings: RequestLimitsSettings = SETTINGS) -> tuple[FastAPI, list[int]]:
    app = FastAPI()
    handled: list[int] = []

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        body = await request.body()
        handled.append(len(body))
        return {"size": len(body)}

    app.add_middleware(RequestLimitsMiddleware, settings=settings)
    return app, handled


async def _post(app: FastAPI, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://svc"
    ) as client:
        return await client.post("/upload", **kwargs)  # type: ignore[arg-type]


async def test_body_within_limit_passes() -> None:
    app, handled = _app()
    response = await _post(app, content=b"x" * 1_000)
    assert response.status_code == 200
    assert handled == [1_000]


async def test_declared_oversized_body_is_refused_before_the_app() -> None:
    app, handled = _app()
    response = await _post(app, content=b"x" * 1_001)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert handled == []


async def test_streamed_oversized_body_is_refused() -> None:
    app, handled = _app()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b"y" * 100

    response = await _post(app, content=chunks())
    assert response.status_code == 413
    assert handled == []


async def test_invalid_content_length_is_a_bad_request() -> None:
    app, _ = _app()
    response = await _post(app, content=b"x", headers={"content-length": "1x"})
    assert response.status_code == 400


async def test_oversized_headers_are_431() -> None:
    app, handled = _app()
    big = await _post(app, content=b"x", headers={"x-big": "v" * 2_500})
    many = await _post(app, content=b"x", headers={f"x-h{i}": "1" for i in range(40)})
    assert big.status_code == 431
    assert many.status_code == 431
    assert handled == []


@pytest.mark.parametrize("field", ["max_header_bytes", "max_header_count"])
def test_settings_have_sane_floors(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RequestLimitsSettings.model_validate({field: 1})
