"""The one place that uses FastAPI's private per-request telemetry record.

FastAPI 0.16x reports the route it selected (mount and include prefixes included) to the
object at ``scope["fastapi.telemetry"]`` when that object is its ``_RequestTelemetry``
(from the private module ``fastapi.telemetry._api``), and skips its own instrumentation
when the key is present. An empty record (no span, tracer or logger) makes FastAPI tell us
the template and nothing else; :func:`saasfw.core.route_template` reads it back.

Fallback: when the module or the class is missing (FastAPI before native telemetry, or a
release that renamed it), or the class no longer takes the arguments used here,
:func:`request_telemetry_factory` returns None. The middleware then adds nothing to the
scope and :func:`saasfw.core.route_template` resolves the template from what Starlette
and FastAPI's router leave in the scope (the matched route and FastAPI's effective route
context), which names nested routers and mounts the same way. ``tests/
test_fastapi_internals.py`` checks both, at the newest and at the lowest FastAPI allowed.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["request_telemetry_factory"]

_MODULE = "fastapi.telemetry._api"


def _load() -> ModuleType | None:
    if "fastapi" not in sys.modules:
        return None  # plain Starlette services never pay for importing FastAPI
    try:
        return importlib.import_module(_MODULE)
    except ImportError:
        return None


def request_telemetry_factory(source: Any = None) -> Callable[[str], object] | None:
    """A function making an empty request-telemetry record for one request's method.

    Args:
        source: the object holding ``_RequestTelemetry``; FastAPI's private module when
            omitted (only when FastAPI is already imported).

    Returns None when there is no usable record class: the caller relies on the scope.
    """
    module = _load() if source is None else source
    record_class = getattr(module, "_RequestTelemetry", None)
    if not callable(record_class):
        return None

    def record(method: str) -> object:
        return record_class(span=None, span_method=method, data=None)

    try:
        probe = record("GET")
    except TypeError:  # the record's fields changed: do not guess
        return None
    if not hasattr(probe, "route"):
        return None  # FastAPI would not report the template where route_template reads it
    return record
