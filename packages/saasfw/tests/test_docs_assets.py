"""/docs and /redoc are served from the installed fastapi-offline files, under a strict CSP."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from saasfw.app import ComponentSwitches, ServiceSettings, create_app
from saasfw.app._docs_assets import DOCS_CSP, REDOC_CSP, install_offline_docs
from saasfw.app._observability import observability_settings
from saasfw.observability import setup_observability
from saasfw.security.advanced import routes_without_security

REFERENCE = re.compile(r'(?:src|href|spec-url)="([^"]+)"')
OUTSIDE = re.compile(r"https?://", re.I)


def client_for(app: FastAPI, root_path: str = "") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def plain_app(**kwargs: object) -> FastAPI:
    app = FastAPI(title="Plain <service>", **kwargs)  # type: ignore[arg-type]

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"ping": "pong"}

    return app


def packaged(name: str) -> bytes:
    return (files("fastapi_offline") / "static" / name).read_bytes()


async def fetch_page_and_references(
    client: httpx.AsyncClient, path: str
) -> tuple[httpx.Response, dict[str, httpx.Response]]:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    references = {ref: await client.get(ref) for ref in REFERENCE.findall(page.text)}
    return page, references


@pytest.mark.parametrize(
    ("path", "csp", "expected"),
    [
        ("/docs", DOCS_CSP, {"swagger-ui-bundle.js", "swagger-ui.css", "swagger-init.js"}),
        ("/redoc", REDOC_CSP, {"redoc.standalone.js"}),
    ],
)
async def test_pages_and_every_file_they_reference_come_from_this_origin(
    path: str, csp: str, expected: set[str]
) -> None:
    app = plain_app(docs_url=None, redoc_url=None)
    install_offline_docs(app)
    async with client_for(app) as client:
        page, references = await fetch_page_and_references(client, path)
    assert page.headers["content-security-policy"] == csp
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
    assert OUTSIDE.search(page.text) is None, page.text
    assert "<script>" not in page.text  # no inline script: the CSP allows none
    assert "Plain &lt;service&gt;" in page.text  # the title is escaped
    for ref, answer in references.items():
        assert ref.startswith("/"), ref
        assert answer.status_code == 200, ref
        assert answer.content, ref
    names = {ref.rsplit("/", 1)[1] for ref in references if ref.startswith("/docs/assets/")}
    assert expected <= names
    for name in names & {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"}:
        assert references[f"/docs/assets/{name}"].content == packaged(name)


async def test_assets_carry_media_types_and_revalidate_with_etags() -> None:
    app = plain_app(docs_url=None, redoc_url=None)
    install_offline_docs(app)
    async with client_for(app) as client:
        script = await client.get("/docs/assets/swagger-ui-bundle.js")
        style = await client.get("/docs/assets/swagger-ui.css")
        again = await client.get(
            "/docs/assets/swagger-ui.css", headers={"If-None-Match": style.headers["etag"]}
        )
        unknown = await client.get("/docs/assets/..%2F__init__.py")
        missing = await client.get("/docs/assets/nothing.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert again.status_code == 304
    assert again.content == b""
    assert unknown.status_code == 404
    assert missing.status_code == 404


async def test_fastapis_cdn_pages_are_replaced_and_a_second_call_changes_nothing() -> None:
    app = plain_app()  # FastAPI's own /docs and /redoc, which load from a CDN
    install_offline_docs(app)
    install_offline_docs(app)
    paths = [getattr(route, "path", None) for route in app.routes]
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect", "/docs/assets/{name}"):
        assert paths.count(path) == 1, paths
    async with client_for(app) as client:
        for path in ("/docs", "/redoc"):
            page = await client.get(path)
            assert OUTSIDE.search(page.text) is None, page.text
        schema = (await client.get("/openapi.json")).json()
    assert set(schema["paths"]) == {"/ping"}  # the docs routes stay out of the document


async def test_swagger_ui_configuration_follows_the_app() -> None:
    app = plain_app(
        docs_url=None,
        redoc_url=None,
        swagger_ui_parameters={"persistAuthorization": True},
        swagger_ui_init_oauth={"clientId": "docs</script>"},
    )
    install_offline_docs(app)
    async with client_for(app, root_path="/orders-api") as client:
        page, references = await fetch_page_and_references(client, "/docs")
        redirect, redirect_refs = await fetch_page_and_references(client, "/docs/oauth2-redirect")
    block = re.search(r'type="application/json">(.*?)</script>', page.text, re.S)
    assert block is not None
    config = json.loads(block.group(1))
    assert config["url"] == "/orders-api/openapi.json"
    assert config["oauth2RedirectUrl"] == "/orders-api/docs/oauth2-redirect"
    assert config["persistAuthorization"] is True
    assert config["validatorUrl"] is None
    assert config["saasfwInitOAuth"] == {"clientId": "docs</script>"}
    assert "docs</script>" not in page.text  # escaped inside the data block
    assert all(ref.startswith("/orders-api/docs/assets/") for ref in references)
    assert redirect.headers["content-security-policy"] == DOCS_CSP
    assert list(redirect_refs) == ["/orders-api/docs/assets/oauth2-redirect.js"]
    assert (
        b"swaggerUIRedirectOauth2"
        in redirect_refs["/orders-api/docs/assets/oauth2-redirect.js"].content
    )


async def test_other_paths_and_no_schema() -> None:
    app = plain_app(docs_url=None, redoc_url=None)
    install_offline_docs(app, docs_url="/api-docs", redoc_url=None)
    async with client_for(app) as client:
        _page, references = await fetch_page_and_references(client, "/api-docs")
        assert (await client.get("/redoc")).status_code == 404
    assert all(ref.startswith("/api-docs/assets/") for ref in references)
    assert all(answer.status_code == 200 for answer in references.values())

    hidden = plain_app(openapi_url=None)
    install_offline_docs(hidden)
    async with client_for(hidden) as client:
        assert (await client.get("/docs")).status_code == 404


def composed_app(tmp_path: Path) -> FastAPI:
    settings = ServiceSettings(
        service="docs-service",
        env="development",
        data_dir=tmp_path,
        components=ComponentSwitches(database=False, audit=False),
    )
    obs = setup_observability(
        observability_settings(settings), registry=CollectorRegistry(), logging=False
    )
    app = create_app(settings, observability=obs)
    install_offline_docs(app)
    return app


async def test_composed_app_serves_the_pages_through_its_security_layer(tmp_path: Path) -> None:
    app = composed_app(tmp_path)
    assert routes_without_security(app) == []  # the start-up route check stays green
    async with app.router.lifespan_context(app), client_for(app) as client:
        docs = await client.get("/docs")
        redoc = await client.get("/redoc")
        asset = await client.get("/docs/assets/swagger-init.js")
        api = await client.get("/openapi.json")
    assert docs.status_code == 200
    # The page's own policy, not the API's deny-all one (nor none at all).
    assert docs.headers["content-security-policy"] == DOCS_CSP
    assert redoc.headers["content-security-policy"] == REDOC_CSP
    assert docs.headers["x-content-type-options"] == "nosniff"
    assert docs.headers["x-frame-options"] == "DENY"
    assert OUTSIDE.search(docs.text) is None
    assert asset.status_code == 200
    assert "/docs" not in api.json()["paths"]
