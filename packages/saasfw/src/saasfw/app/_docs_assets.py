"""Serve ``/docs`` and ``/redoc`` without any outside network, under a strict CSP.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they break offline, behind an
egress firewall, and whenever the CDN changes the files it serves. These pages load the
copies the ``fastapi-offline`` wheel ships (found with ``importlib.resources``, never copied
into this repository) from ``<docs>/assets/``. Swagger UI's start-up code is an external
script from the same place, with its configuration in a JSON data block, so the pages'
Content-Security-Policy allows scripts from ``'self'`` only: no inline script, no CDN.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import swagger_ui_default_parameters
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

__all__ = ["DOCS_CSP", "REDOC_CSP", "OfflineDocs", "OfflineDocsError", "install_offline_docs"]

DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
"""Swagger UI: everything from this origin, no inline script or style, no other host."""

REDOC_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; worker-src blob:; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)
"""ReDoc: as Swagger UI, except that it injects its styles as ``<style>`` elements (no
script can be injected that way) and runs its search index in a worker made from a blob."""

# What fastapi-offline ships, by the name the pages use, with its media type.
_PACKAGED = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}

_SWAGGER_INIT = """\
"use strict";
// Starts Swagger UI from the JSON block the page carries (no inline script: CSP 'self').
(function () {
  var config = JSON.parse(document.getElementById("saasfw-swagger-config").textContent);
  var initOAuth = config.saasfwInitOAuth;
  delete config.saasfwInitOAuth;
  if (config.oauth2RedirectUrl) {
    config.oauth2RedirectUrl = window.location.origin + config.oauth2RedirectUrl;
  }
  config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];
  config.plugins = [SwaggerUIBundle.plugins.DownloadUrl];
  var ui = SwaggerUIBundle(config);
  if (initOAuth) {
    ui.initOAuth(initOAuth);
  }
  window.ui = ui;
})();
"""

_OAUTH2_REDIRECT = """\
"use strict";
// Hands the authorization server's answer back to the Swagger UI window that opened us.
(function () {
  var opener = window.opener;
  var pending = opener && opener.swaggerUIRedirectOauth2;
  if (!pending) {
    document.body.textContent = "No Swagger UI authorization is waiting for this answer.";
    return;
  }
  var auth = pending.auth;
  var fromHash = /code|token|error/.test(window.location.hash);
  var raw = (fromHash ? window.location.hash : window.location.search).replace(/^[#?]/, "");
  var params = new URLSearchParams(raw);
  var answer = {};
  params.forEach(function (value, key) { answer[key] = value; });
  var stateMatches = answer.state === pending.state;
  var flow = auth.schema.get("flow");
  var codeFlow = flow === "accessCode" || flow === "authorizationCode" ||
    flow === "authorization_code";
  if (codeFlow && !auth.code) {
    if (!stateMatches) {
      pending.errCb({
        authId: auth.name, source: "auth", level: "warning",
        message: "Authorization may be unsafe: the state sent was not returned by the " +
          "authorization server."
      });
    }
    if (answer.code) {
      delete pending.state;
      auth.code = answer.code;
      pending.callback({auth: auth, redirectUrl: pending.redirectUrl});
    } else {
      var reason = answer.error ? "[" + answer.error + "]: " +
        (answer.error_description || "no description") +
        (answer.error_uri ? " More info: " + answer.error_uri : "") :
        "no code was received from the authorization server.";
      pending.errCb({authId: auth.name, source: "auth", level: "error", message: reason});
    }
  } else {
    pending.callback({
      auth: auth, token: answer, isValid: stateMatches, redirectUrl: pending.redirectUrl
    });
  }
  window.close();
})();
"""

_OWN = {
    "swagger-init.js": (_SWAGGER_INIT.encode(), "text/javascript; charset=utf-8"),
    "oauth2-redirect.js": (_OAUTH2_REDIRECT.encode(), "text/javascript; charset=utf-8"),
}


class OfflineDocsError(ImportError):
    """The installed ``fastapi-offline`` does not ship the files the docs pages need."""


@dataclass(frozen=True)
class OfflineDocs:
    """Where an app serves its offline docs (kept on ``app.state.saasfw_docs``)."""

    docs_url: str | None
    redoc_url: str | None
    assets_url: str


@cache
def _asset(name: str) -> tuple[bytes, str, str]:
    """(content, media type, ETag) of a served file, read once per process."""
    if name in _OWN:
        content, media_type = _OWN[name]
    else:
        content = (files("fastapi_offline") / "static" / name).read_bytes()
        media_type = _PACKAGED[name]
    return content, media_type, '"' + hashlib.sha256(content).hexdigest()[:32] + '"'


def _check_packaged_assets() -> None:
    try:
        static = files("fastapi_offline") / "static"
    except ModuleNotFoundError as exc:
        raise OfflineDocsError(
            "the offline docs need the fastapi-offline package (a dependency of saasfw); "
            "reinstall saasfw"
        ) from exc
    missing = [name for name in _PACKAGED if not (static / name).is_file()]
    if missing:
        raise OfflineDocsError(
            f"fastapi-offline does not ship {', '.join(missing)}; install a release that does"
        )


async def _serve_asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in _PACKAGED and name not in _OWN:
        return Response(status_code=404)
    content, media_type, etag = _asset(name)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=media_type, headers=headers)


def _json_block(value: Any) -> str:
    """JSON safe inside a ``<script type="application/json">`` element."""
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(title: str, head: str, body: str, csp: str) -> HTMLResponse:
    document = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )
    return HTMLResponse(
        document, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"}
    )


def _swagger_page(app: FastAPI, docs: OfflineDocs, redirect_url: str | None) -> Any:
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        assets = html.escape(root + docs.assets_url)
        config: dict[str, Any] = {
            **swagger_ui_default_parameters,
            "url": f"{root}{app.openapi_url}",
            "validatorUrl": None,  # never send the schema to an outside validator
            **(app.swagger_ui_parameters or {}),
        }
        if redirect_url:
            config["oauth2RedirectUrl"] = root + redirect_url
        if app.swagger_ui_init_oauth:
            config["saasfwInitOAuth"] = app.swagger_ui_init_oauth
        head = (
            f'<link rel="icon" type="image/png" href="{assets}/favicon.png">\n'
            f'<link rel="stylesheet" href="{assets}/swagger-ui.css">\n'
        )
        body = (
            '<div id="swagger-ui"></div>\n'
            '<script id="saasfw-swagger-config" type="application/json">'
            f"{_json_block(config)}</script>\n"
            f'<script src="{assets}/swagger-ui-bundle.js"></script>\n'
            f'<script src="{assets}/swagger-init.js"></script>\n'
        )
        return _page(f"{app.title} - Swagger UI", head, body, DOCS_CSP)

    return swagger_ui


def _redirect_page(docs: OfflineDocs) -> Any:
    async def oauth2_redirect(request: Request) -> HTMLResponse:
        assets = html.escape(request.scope.get("root_path", "") + docs.assets_url)
        body = f'<script src="{assets}/oauth2-redirect.js"></script>\n'
        return _page("Swagger UI: OAuth2 redirect", "", body, DOCS_CSP)

    return oauth2_redirect


def _redoc_page(app: FastAPI, docs: OfflineDocs) -> Any:
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        assets = html.escape(root + docs.assets_url)
        spec = html.escape(f"{root}{app.openapi_url}")
        head = f'<link rel="icon" type="image/png" href="{assets}/favicon.png">\n'
        body = (
            f'<redoc spec-url="{spec}"></redoc>\n'
            f'<script src="{assets}/redoc.standalone.js"></script>\n'
        )
        return _page(f"{app.title} - ReDoc", head, body, REDOC_CSP)

    return redoc


def _drop_fastapi_pages(app: FastAPI) -> None:
    """Remove the CDN pages FastAPI added itself (a constructor without ``docs_url=None``)."""
    theirs = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url} - {None}
    if not theirs or app.openapi_url is None:
        return
    kept: list[BaseRoute] = [
        route
        for route in app.router.routes
        if not (type(route) is Route and route.path in theirs)  # FastAPI's are plain Routes
    ]
    app.router.routes[:] = kept
    app.docs_url = app.redoc_url = None


def install_offline_docs(
    app: FastAPI, *, docs_url: str | None = "/docs", redoc_url: str | None = "/redoc"
) -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` with no outside request.

    The pages' files come from the installed ``fastapi-offline`` package and are served at
    ``<docs_url>/assets/`` (``<redoc_url>/assets/`` without Swagger UI). Each page sends its
    own Content-Security-Policy (:data:`DOCS_CSP`, :data:`REDOC_CSP`), which saasfw's
    security headers never replace. The routes are plain Starlette routes, outside the
    OpenAPI document, like FastAPI's own docs routes. Swagger UI's OAuth2 redirect page is
    served at ``app.swagger_ui_oauth2_redirect_url``; ``app.swagger_ui_parameters`` and
    ``app.swagger_ui_init_oauth`` apply as with FastAPI's pages.

    Pages FastAPI added itself (an app built without ``docs_url=None, redoc_url=None``) are
    replaced. Calling it again on the same app does nothing; an app with no OpenAPI
    document (``openapi_url=None``) gets no docs.

    Raises:
        OfflineDocsError: ``fastapi-offline`` is missing or lacks a file the pages need.
    """
    if getattr(app.state, "saasfw_docs", None) is not None or app.openapi_url is None:
        return
    if docs_url is None and redoc_url is None:
        return
    _check_packaged_assets()
    redirect_url = app.swagger_ui_oauth2_redirect_url if docs_url else None
    _drop_fastapi_pages(app)
    base = docs_url if docs_url is not None else redoc_url
    docs = OfflineDocs(docs_url, redoc_url, f"{base}/assets")
    hidden: dict[str, Any] = {"methods": ["GET"], "include_in_schema": False}
    app.add_route(f"{docs.assets_url}/{{name}}", _serve_asset, **hidden)
    if docs_url is not None:
        app.add_route(docs_url, _swagger_page(app, docs, redirect_url), **hidden)
        if redirect_url:
            app.add_route(redirect_url, _redirect_page(docs), **hidden)
    if redoc_url is not None:
        app.add_route(redoc_url, _redoc_page(app, docs), **hidden)
    app.state.saasfw_docs = docs
