"""``lazy_exports``: the one way a saasfw package face loads a name on first use.

Every package ``__init__`` has the same shape: its docstring; the names that are cheap to
import, imported; the costly ones in a ``_LAZY`` map (name to module), with their imports
under ``TYPE_CHECKING`` for type checkers; ``__getattr__, __dir__ = lazy_exports(__name__,
_LAZY)``; and ``__all__``, the face, sorted.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str,
    lazy: Mapping[str, str],
    *,
    deprecated: Mapping[str, tuple[str, str, str]] | None = None,
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package face.

    ``lazy`` maps each name loaded on first use to the module that defines it (or to
    ``"module:attribute"`` when the face renames it); once loaded, the name is stored on
    the package, so later lookups cost nothing.
    ``deprecated`` maps an old name to ``(module, attribute, message)``: every use warns
    (``DeprecationWarning`` at the caller's line) and returns the new object.
    """
    old_names = dict(deprecated or {})

    def __getattr__(name: str) -> Any:
        if name in old_names:
            source, attribute, message = old_names[name]
            warnings.warn(message, DeprecationWarning, stacklevel=2)
            return getattr(importlib.import_module(source), attribute)
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = module.partition(":")
        value = getattr(importlib.import_module(module), attribute or name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(lazy) | set(old_names))

    return __getattr__, __dir__
