import httpx
import pytest
from fastapi import FastAPI, Response

from saasfw.security._headers import SecurityHeadersMiddleware, SecurityHeadersSettings
from saasfw.security._proxies import TrustedProxies


def _app(settings: SecurityHeadersSettings | None = None, **kwargs: TrustedProxies) -> FastAPI:
    app = FastAPI()

    @app.get("/api")
    async def api() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/own-csp")
    async def own_csp(response: Response) -> dict[str, str]:
        response.headers["content-security-policy"] = "default-src 'self'"
        return {"ok": "yes"}

    app.add_middleware(SecurityHeadersMiddleware, settings=settings, **kwargs)
    return app


async def _get(
    app: FastAPI,
    path: str,
    *,
    base: str = "http://svc",
    peer: str = "203.0.113.1",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(peer, 1))
    async with httpx.AsyncClient(transport=transport, base_url=base) as client:
        return await client.get(path, headers=headers)


async def test_api_responses_get_restrictive_headers() -> None:
    response = await _get(_app(), "/api")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cross-origin-opener-policy"] == "same-origin"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "strict-transport-security" not in response.headers  # plain HTTP


async def test_errors_get_them_too() -> None:
    response = await _get(_app(), "/missing")
    assert response.status_code == 404
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_hsts_only_over_https() -> None:
    response = await _get(_app(), "/api", base="https://svc")
    assert response.headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"


async def test_hsts_behind_a_trusted_tls_proxy_only() -> None:
    app = _app(proxies=TrustedProxies(["10.0.0.0/8"]))
    forwarded = {"X-Forwarded-Proto": "https"}
    trusted = await _get(app, "/api", peer="10.0.0.3", headers=forwarded)
    spoofed = await _get(app, "/api", peer="203.0.113.9", headers=forwarded)
    assert "strict-transport-security" in trusted.headers
    assert "strict-transport-security" not in spoofed.headers


async def test_docs_are_exempt_from_the_csp_only() -> None:
    response = await _get(_app(), "/docs")
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers
    assert response.headers["x-frame-options"] == "DENY"


async def test_application_headers_are_not_overwritten() -> None:
    response = await _get(_app(), "/own-csp")
    assert response.headers.get_list("content-security-policy") == ["default-src 'self'"]


async def test_configurable_and_switchable() -> None:
    settings = SecurityHeadersSettings(
        referrer_policy="strict-origin",
        frame_options=None,
        content_security_policy=None,
        hsts_max_age=300,
        hsts_include_subdomains=False,
        hsts_preload=True,
        cross_origin_opener_policy=None,
    )
    response = await _get(_app(settings), "/api", base="https://svc")
    assert response.headers["referrer-policy"] == "strict-origin"
    assert "x-frame-options" not in response.headers
    assert "content-security-policy" not in response.headers
    assert response.headers["strict-transport-security"] == "max-age=300; preload"
    off = await _get(_app(SecurityHeadersSettings(enabled=False)), "/api")
    assert "x-content-type-options" not in off.headers


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        SecurityHeadersMiddleware(
            _app(), SecurityHeadersSettings(referrer_policy="x\r\nSet-Cookie: a=b")
        )
