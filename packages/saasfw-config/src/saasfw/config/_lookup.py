"""Read one setting from a settings object by its dotted path (``security.jwt.issuer``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["value_at"]


def value_at(settings: Any, path: str) -> Any:
    """The value at a dotted path through models (fields only) and mappings, or None."""
    value = settings
    for part in path.split(".") if path else ():
        if isinstance(value, BaseModel):
            value = getattr(value, part) if part in type(value).model_fields else None
        elif isinstance(value, Mapping):
            value = value.get(part)
        else:
            return None
        if value is None:
            return None
    return value
