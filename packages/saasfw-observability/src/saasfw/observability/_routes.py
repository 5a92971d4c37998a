"""FastAPI's per-request route recorder, which lets saasfw-core name the full route template."""

from __future__ import annotations

import sys
from collections.abc import Callable

from saasfw.core import UNMATCHED_ROUTE, route_template

# The template resolution itself is saasfw-core's, shared with audit so that audit
# records, access-log lines and metric labels always name a route the same way.
UNMATCHED = UNMATCHED_ROUTE

__all__ = ["UNMATCHED", "fastapi_route_recorder", "route_template"]


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
