"""Load a service's settings model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

from saasfw.app._settings import ServiceSettings

__all__ = ["load_settings"]

S = TypeVar("S", bound=ServiceSettings)

_PREFIX = "SAASFW_"


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(_PREFIX) or name.startswith("SAASFW_TEST_"):
            continue
        path = name[len(_PREFIX) :].lower().split("__")
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[path[-1]] = value
    return tree


def load_settings(model: type[S], *, service: str, environ: Mapping[str, str] | None = None) -> S:
    """Load ``model`` for ``service`` from ``SAASFW_*`` variables (``__`` nests sections)."""
    data = _from_environ(os.environ if environ is None else environ)
    data.setdefault("service", service)
    data.pop("require_services", None)
    return model.model_validate(data)
