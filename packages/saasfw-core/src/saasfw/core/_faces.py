"""``lazy_exports``: the one way a saasfw package face loads a name on first use.

Every package ``__init__`` has the same shape: its docstring; the names that are cheap to
import, imported; the costly ones in a ``_LAZY`` map (name to module), with their imports
under ``TYPE_CHECKING`` for type checkers; ``__getattr__, __dir__ = lazy_exports(__name__,
_LAZY)``; and ``__all__``, the face, sorted.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, lazy: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package face.

    ``lazy`` maps each name loaded on first use to the module that defines it; once
    loaded, the name is stored on the package, so later lookups cost nothing.
    """

    def __getattr__(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(lazy))

    return __getattr__, __dir__
