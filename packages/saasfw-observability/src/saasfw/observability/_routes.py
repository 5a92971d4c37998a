"""The route template of a request, read from what the router recorded in the scope."""

from __future__ import annotations

import sys
from collections.abc import Callable, MutableMapping
from typing import Any

from starlette.routing import Mount

UNMATCHED = "<unmatched>"

_FASTAPI_KEY = "fastapi.telemetry"


def route_template(scope: MutableMapping[str, Any], root_path: str) -> str:
    """Return the route template that handled the request (``/items/{item_id}``).

    Called after the application ran (or, for the in-flight gauge, while it runs), so it
    costs a few dict reads instead of a second routing pass. In order:

    1. FastAPI records the full template (mount and include prefixes, plain Starlette
       routes, slash redirects) on its per-request telemetry object; the middleware puts
       one in the scope when FastAPI's own telemetry did not (see
       :func:`fastapi_route_recorder`). For a mounted non-FastAPI app FastAPI only
       knows the mount (``/legacy/{path}``); the next steps find the inner route.
    2. Starlette records the matched route in ``scope["route"]``; FastAPI's included
       routers record the prefixed template in their effective route context.
    3. Mounted applications extend ``root_path``: the part they added is the mount prefix.

    A request no route matched (404) gets the fixed label ``<unmatched>``, so label
    cardinality is bounded by the application's routes whatever paths clients send.

    Args:
        scope: the request scope.
        root_path: ``scope["root_path"]`` as it was before the application ran.
    """
    recorded = getattr(scope.get(_FASTAPI_KEY), "route", None)
    if recorded and not recorded.endswith("/{path}"):
        return str(recorded)
    # FastAPI only sees the mount of a mounted non-FastAPI app; its router may know more.
    template = _from_scope(scope, root_path)
    if recorded and template == UNMATCHED:
        return str(recorded)
    return template


def _from_scope(scope: MutableMapping[str, Any], root_path: str) -> str:
    mount_prefix = ""
    current_root = scope.get("root_path", "")
    if current_root != root_path and current_root.startswith(root_path):
        mount_prefix = current_root[len(root_path) :]
    route = scope.get("route")
    if route is None:
        # FastAPI does not record mounts in scope["route"]; root_path still shows one matched.
        return f"{mount_prefix}/{{path}}" if mount_prefix else UNMATCHED
    template: str | None = None
    fastapi_scope = scope.get("fastapi")
    if fastapi_scope is not None:
        effective = fastapi_scope.get("effective_route_context")
        if effective is not None and getattr(effective, "original_route", None) is route:
            template = getattr(effective, "path_format", None)
    if template is None:
        template = getattr(route, "path_format", None)
        if not template:
            return UNMATCHED
    if isinstance(route, Mount):
        # A mounted app without its own router: its matched path is already the prefix.
        return f"{mount_prefix}/{{path}}" if mount_prefix else template
    return mount_prefix + template


def fastapi_route_recorder() -> Callable[[str], object] | None:
    """A factory for FastAPI's per-request route recorder, when the app can be FastAPI.

    FastAPI (0.16x) reports the route it selected, with mount and include prefixes, to
    the object at ``scope["fastapi.telemetry"]`` when that object is its request-telemetry
    record, and skips its own instrumentation when the key is present. An empty record
    (no span, no tracer, no logger) makes FastAPI tell us the template and nothing else.
    Imported only when FastAPI is already loaded, so plain Starlette services never pay
    for importing it; None when this FastAPI has no such record, and the scope-based
    resolution applies.
    """
    if "fastapi" not in sys.modules:
        return None
    try:
        from fastapi.telemetry._api import _RequestTelemetry
    except ImportError:  # pragma: no cover - FastAPI without native telemetry
        return None

    def record(method: str) -> object:
        return _RequestTelemetry(span=None, span_method=method, data=None)

    return record
