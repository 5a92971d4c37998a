"""The route template of a request, read from what the router recorded in the ASGI scope.

Audit records, access-log lines and metric labels all name the route by this one function,
so they agree, nested routers and mounts included. It reads the scope only (no Starlette
import): call it after the application ran, with ``root_path`` as it was before.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["UNMATCHED_ROUTE", "route_template"]

UNMATCHED_ROUTE = "<unmatched>"

# Where FastAPI (0.16x) reports the full template of the route it selected, when the scope
# holds its per-request telemetry record (saasfw-observability puts an empty one there).
_FASTAPI_TELEMETRY = "fastapi.telemetry"


def route_template(scope: Mapping[str, Any], root_path: str = "") -> str:
    """Return the template of the route that handled the request (``/v1/items/{id}``).

    In order: the full template FastAPI recorded on its telemetry record (mount and
    include prefixes, slash redirects); the prefixed template FastAPI's included routers
    keep in their effective route context; the matched route's own template, behind the
    mount prefix the application added to ``root_path``. A request that no route matched
    gets ``<unmatched>``, so labels stay bounded whatever paths clients send.

    Args:
        scope: the request scope, after the application ran.
        root_path: ``scope["root_path"]`` as it was before the application ran.
    """
    recorded = getattr(scope.get(_FASTAPI_TELEMETRY), "route", None)
    if recorded and not str(recorded).endswith("/{path}"):
        return str(recorded)
    template = _from_scope(scope, root_path)
    if recorded and template == UNMATCHED_ROUTE:
        return str(recorded)
    return template


def _is_mount(route: Any) -> bool:
    # A Starlette Mount (or Host) routes to an app of its own and exposes its sub-routes.
    return hasattr(route, "routes") and hasattr(route, "app") and not hasattr(route, "endpoint")


def _from_scope(scope: Mapping[str, Any], root_path: str) -> str:
    mount_prefix = ""
    current_root = scope.get("root_path", "") or ""
    if current_root != root_path and current_root.startswith(root_path):
        mount_prefix = current_root[len(root_path) :]
    route = scope.get("route")
    if route is None:
        return f"{mount_prefix}/{{path}}" if mount_prefix else UNMATCHED_ROUTE
    template: str | None = None
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, Mapping):
        effective = fastapi_scope.get("effective_route_context")
        if effective is not None and getattr(effective, "original_route", None) is route:
            template = getattr(effective, "path_format", None)
    if template is None:
        template = getattr(route, "path_format", None)
        if not template:
            return UNMATCHED_ROUTE
    if _is_mount(route):
        return f"{mount_prefix}/{{path}}" if mount_prefix else template
    return mount_prefix + template
