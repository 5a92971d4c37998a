"""The start-up route check: every API route declares its security, or the app refuses to start.

A route declares security with ``require(...)``, ``optional_principal`` or ``public``,
directly, on its router, or on ``include_router``; the check reads the marker each of those
dependencies carries.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import FastAPI

from saasfw.security._dependency import MARKER
from saasfw.security._errors import ConfigurationError

__all__ = ["api_routes", "assert_routes_secured", "routes_without_security", "security_lifespan"]


def _markers(dependant: Any) -> Iterator[tuple[str, ...]]:
    """The security markers (``require(...)``, ``optional_principal``, ``public``) in a
    dependant tree."""
    marker = getattr(getattr(dependant, "call", None), MARKER, None)
    if marker is not None:
        yield marker
    for sub in getattr(dependant, "dependencies", ()):
        yield from _markers(sub)


def _route_entries(app: FastAPI) -> list[tuple[Any, Any]]:
    """(original route, effective route) pairs, with included routers flattened."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - FastAPI before lazy router inclusion
        return [(route, route) for route in app.routes]
    return [(ctx.original_route, ctx) for ctx in iter_route_contexts(app.routes)]


def api_routes(app: FastAPI) -> Iterator[tuple[Any, Any, list[tuple[str, ...]]]]:
    """Each API route as (original, effective, its security markers); the markers include
    dependencies declared on ``include_router`` or on the router."""
    from fastapi.routing import APIRoute

    for original, effective in _route_entries(app):
        if not isinstance(original, APIRoute):
            continue
        dependant = getattr(effective, "dependant", None) or original.dependant
        markers = list(_markers(dependant))
        for dep in getattr(effective, "dependencies", None) or ():
            own = getattr(getattr(dep, "dependency", None), MARKER, None)
            if own is not None:
                markers.append(own)
            markers.extend(_markers(getattr(dep, "dependant", None)))
        yield original, effective, markers


def routes_without_security(app: FastAPI) -> list[str]:
    """Routes (``"GET /path"``) with neither a ``require(...)`` nor the ``public`` marker.

    Included routers are flattened; dependencies declared on ``include_router`` or on the
    router count for each of its routes.
    """
    missing = []
    for original, effective, markers in api_routes(app):
        if not markers:
            methods = getattr(effective, "methods", None) or original.methods or ()
            path = getattr(effective, "path", None) or original.path
            missing.append(f"{','.join(sorted(methods))} {path}")
    return missing


def assert_routes_secured(app: FastAPI) -> None:
    """Raise :class:`ConfigurationError` listing routes with no declared security."""
    missing = routes_without_security(app)
    if missing:
        raise ConfigurationError(
            "routes without declared security (add Depends(require(...)) or "
            "dependencies=[Depends(public)]): " + "; ".join(missing)
        )


@contextlib.asynccontextmanager
async def security_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Lifespan part that refuses to start while a route has no declared security."""
    assert_routes_secured(app)
    yield
