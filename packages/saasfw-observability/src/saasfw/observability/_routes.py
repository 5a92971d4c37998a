"""FastAPI's per-request route recorder, which lets saasfw-core name the full route template."""

from __future__ import annotations

from collections.abc import Callable

from saasfw.core import UNMATCHED_ROUTE, route_template
from saasfw.observability._fastapi_internals import request_telemetry_factory

# The template resolution itself is saasfw-core's, shared with audit so that audit
# records, access-log lines and metric labels always name a route the same way.
UNMATCHED = UNMATCHED_ROUTE

__all__ = ["UNMATCHED", "fastapi_route_recorder", "route_template"]


def fastapi_route_recorder() -> Callable[[str], object] | None:
    """A factory for FastAPI's per-request route recorder, when the app can be FastAPI.

    See :mod:`saasfw.observability._fastapi_internals`: None when FastAPI is not loaded
    or has no such record, and the scope-based resolution applies.
    """
    return request_telemetry_factory()
