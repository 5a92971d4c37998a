"""The strict, frozen twin of a settings model."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from saasfw.config._model import annotation_at, harden, is_complex, is_secret


class Leaf(BaseModel):
    model_config = ConfigDict(extra="allow")

    value: int = 1

    @field_validator("value")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must not be negative")
        return value


class Root(BaseModel):
    leaf: Leaf = Leaf(value=7)
    optional: Leaf | None = None
    many: list[Leaf] = []
    by_name: dict[str, Leaf] = {}
    constrained: Annotated[list[Leaf], Field(max_length=2)] = []


def test_twin_is_a_subclass_and_cached() -> None:
    twin = harden(Root)
    assert issubclass(twin, Root)
    assert harden(Root) is twin
    assert twin.__name__ == "Root"


def test_twin_forbids_unknown_keys_at_every_level() -> None:
    twin = harden(Root)
    for data in (
        {"leaf": {"valeu": 1}},
        {"optional": {"x": 1}},
        {"many": [{"x": 1}]},
        {"by_name": {"a": {"x": 1}}},
        {"unknown": 1},
    ):
        with pytest.raises(ValidationError) as caught:
            twin.model_validate(data)
        assert caught.value.errors()[0]["type"] == "extra_forbidden"


def test_twin_keeps_validators_constraints_and_default_values() -> None:
    twin = harden(Root)
    with pytest.raises(ValidationError, match="must not be negative"):
        twin.model_validate({"leaf": {"value": -1}})
    with pytest.raises(ValidationError, match="at most 2 items"):
        twin.model_validate({"constrained": [{}, {}, {}]})
    settings = twin.model_validate({})
    assert settings.leaf.value == 7


def test_default_section_instances_become_frozen_too() -> None:
    settings = harden(Root).model_validate({"many": [{}], "by_name": {"a": {}}})
    for section in (settings.leaf, settings.many[0], settings.by_name["a"]):
        assert isinstance(section, Leaf)
        with pytest.raises(ValidationError):
            section.value = 2


def test_annotation_helpers() -> None:
    assert is_complex(list[int])
    assert is_complex(Leaf | None)
    assert not is_complex(int | None)
    assert annotation_at(Root, ("by_name", "x", "value")) is int
    assert annotation_at(Root, ("many", 0, "value")) is int
    assert annotation_at(Root, ("nope",)) is None
    assert not is_secret(str)
