"""Whether a settings field still holds its default (saasfw.config marks every field as set)."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["is_default"]


def is_default(model: BaseModel, name: str) -> bool:
    """True when ``model.<name>`` equals the field's declared default."""
    info = type(model).model_fields[name]
    default = info.get_default(call_default_factory=True, validated_data={})
    return bool(getattr(model, name) == default)
