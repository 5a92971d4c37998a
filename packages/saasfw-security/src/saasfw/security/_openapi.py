"""The OpenAPI document's security: the bearer and API-key schemes on routes taking credentials.

The schemes are not FastAPI sub-dependencies (each would cost every request, see
:mod:`saasfw.security._dependency`), so they are added to the generated document instead,
for the routes that declare ``require(...)`` or ``optional_principal``; ``/docs`` still shows them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.security import APIKeyHeader, HTTPBearer

from saasfw.security._authenticator import API_KEY_HEADER
from saasfw.security._dependency import MARKER
from saasfw.security._routecheck import api_routes

__all__ = ["api_key_scheme", "bearer_scheme", "install_openapi_security"]

bearer_scheme = HTTPBearer(auto_error=False, scheme_name="bearerAuth")
api_key_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, scheme_name="apiKeyAuth")


def _document_security_schemes(schema: dict[str, Any], app: FastAPI) -> None:
    """Add ``bearerAuth``/``apiKeyAuth`` to the operations of routes taking credentials
    (``require(...)`` or ``optional_principal``; ``public`` takes none)."""
    alternatives: list[dict[str, list[str]]] = [
        {bearer_scheme.scheme_name: []},
        {api_key_scheme.scheme_name: []},
    ]
    paths = schema.get("paths", {})
    documented = False
    for original, effective, markers in api_routes(app):
        if all(marker == ("public",) for marker in markers):
            continue
        path = getattr(effective, "path_format", None) or original.path_format
        operations = paths.get(path, {})
        for method in getattr(effective, "methods", None) or original.methods or ():
            operation = operations.get(method.lower())
            if operation is not None and "security" not in operation:
                operation["security"] = [dict(a) for a in alternatives]
                documented = True
    if documented:
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        for scheme in (bearer_scheme, api_key_scheme):
            schemes.setdefault(
                scheme.scheme_name,
                scheme.model.model_dump(mode="json", by_alias=True, exclude_none=True),
            )


def install_openapi_security(app: FastAPI) -> None:
    generate = app.openapi
    if getattr(generate, MARKER, False):
        return

    def openapi() -> dict[str, Any]:
        if not app.openapi_schema:
            schema = generate()
            _document_security_schemes(schema, app)
            app.openapi_schema = schema
        return app.openapi_schema

    setattr(openapi, MARKER, True)
    app.openapi = openapi  # type: ignore[method-assign]
