"""The route template of a request, read from what the router recorded in the scope."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from starlette.routing import Mount

UNMATCHED = "<unmatched>"


def route_template(scope: MutableMapping[str, Any], root_path: str) -> str:
    """Return the route template that handled the request (``/items/{item_id}``).

    Called after the application ran, so it costs a few dict reads instead of a second
    routing pass. Starlette records the matched route in ``scope["route"]``; FastAPI's
    included routers record the prefixed template in their effective route context (the
    bare route there lacks the include prefixes). Mounted applications extend
    ``root_path``: the part they added is the mount prefix. A request no route matched
    (404, slash redirects) gets the fixed label ``<unmatched>``, so label cardinality is
    bounded by the application's routes whatever paths clients send.

    Args:
        scope: the request scope after the application handled it.
        root_path: ``scope["root_path"]`` as it was before the application ran.
    """
    route = scope.get("route")
    if route is None:
        return UNMATCHED
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
    mount_prefix = ""
    current_root = scope.get("root_path", "")
    if current_root != root_path and current_root.startswith(root_path):
        mount_prefix = current_root[len(root_path) :]
    if isinstance(route, Mount):
        # The route is a Mount itself (a mounted app without its own router, such as
        # static files): its matched path is already in mount_prefix.
        return f"{mount_prefix}/{{path}}" if mount_prefix else template
    return mount_prefix + template
