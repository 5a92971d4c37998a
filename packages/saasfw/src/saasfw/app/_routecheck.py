"""The start-up check that every route declares its security, across included routers."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from saasfw.security import ConfigurationError, routes_without_security

__all__ = ["assert_every_route_declares_security"]


def assert_every_route_declares_security(app: FastAPI) -> None:
    """Raise ConfigurationError naming routes with neither ``require(...)`` nor ``public``.

    FastAPI 0.16x keeps included routers as one lazy entry of ``app.routes``, so the
    routes are flattened first; saasfw.security's own check then judges each one.
    """
    flat = SimpleNamespace(routes=[c.original_route for c in iter_route_contexts(app.routes)])
    missing = routes_without_security(cast(Any, flat))
    if missing:
        raise ConfigurationError(
            "routes without declared security (add Depends(require(...)) or "
            "dependencies=[Depends(public)]): " + "; ".join(missing)
        )
