import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from saasfw.security._cors import CorsMiddleware, CorsSettings


def _app(settings: CorsSettings) -> FastAPI:
    app = FastAPI()

    @app.get("/api")
    async def api() -> dict[str, str]:
        return {"ok": "yes"}

    app.add_middleware(CorsMiddleware, settings=settings)
    return app


async def _request(app: FastAPI, method: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://svc"
    ) as client:
        return await client.request(method, "/api", headers=headers)


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }


async def test_default_allows_no_cross_origin_access() -> None:
    app = _app(CorsSettings())
    simple = await _request(app, "GET", {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
    preflight = await _request(app, "OPTIONS", _preflight("https://evil.example"))
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


async def test_listed_origin_with_credentials() -> None:
    app = _app(CorsSettings(allow_origins=("https://app.example",), allow_credentials=True))
    ok = await _request(app, "OPTIONS", _preflight("https://app.example"))
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example"
    assert ok.headers["access-control-allow-credentials"] == "true"
    other = await _request(app, "GET", {"Origin": "https://app.example.evil.test"})
    assert "access-control-allow-origin" not in other.headers
    simple = await _request(app, "GET", {"Origin": "https://app.example"})
    assert "ratelimit" in simple.headers["access-control-expose-headers"].lower()


async def test_wildcard_without_credentials_is_allowed() -> None:
    app = _app(CorsSettings(allow_origins=("*",)))
    response = await _request(app, "GET", {"Origin": "https://anyone.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


async def test_default_passes_requests_without_origin_through_untouched() -> None:
    app = _app(CorsSettings())
    plain = await _request(app, "GET", {})
    assert plain.status_code == 200
    assert plain.json() == {"ok": "yes"}
    assert not any(name.startswith("access-control-") for name in plain.headers)
    assert "vary" not in plain.headers
    # With an Origin the request still gets Starlette's handling, Vary: Origin included.
    cross = await _request(app, "GET", {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in cross.headers
    assert "origin" in cross.headers["vary"].lower()


async def test_configured_origins_still_vary_on_requests_without_origin() -> None:
    app = _app(CorsSettings(allow_origins=("https://app.example",)))
    plain = await _request(app, "GET", {})
    assert "origin" in plain.headers["vary"].lower()
    assert "access-control-allow-origin" not in plain.headers


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"allow_origins": ["*"], "allow_credentials": True}, "cannot be combined"),
        (
            {
                "allow_origins": ["https://a.example"],
                "allow_headers": ["*"],
                "allow_credentials": True,
            },
            "cannot be combined",
        ),
        ({"allow_origins": ["null"]}, "sandboxed"),
        ({"allow_origins": ["https://*.example.com"]}, "no wildcard"),
        ({"allow_origins": ["https://a.example/path"]}, "no path"),
        ({"allow_origins": ["ftp://a.example"]}, "scheme://host"),
        ({"allow_origins": ["https://user@a.example"]}, "scheme://host"),
        ({"allow_methods": ["TRACE"]}, "not allowed"),
    ],
)
def test_unsafe_configurations_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CorsSettings.model_validate(settings)


def test_origins_are_normalised() -> None:
    settings = CorsSettings(allow_origins=("https://a.example/",), allow_methods=("get",))
    assert settings.allow_origins == ("https://a.example",)
    assert settings.allow_methods == ("GET",)
