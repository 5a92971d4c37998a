"""Loaded settings are immutable all the way down (issue 18, part 1)."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from saasfw.config import FrozenDict, load_model, render_effective_settings, resolve_settings
from saasfw.config.testing import assert_deeply_immutable, mutation_attempts

WriteFile = Callable[[str, str], Path]


class Role(BaseModel):
    permissions: list[str] = Field(default_factory=list)
    scopes: set[str] = Field(default_factory=set)


class User(BaseModel):
    model_config = ConfigDict(extra="allow")  # the twin forbids extras anyway

    password: SecretStr = SecretStr("")
    roles: list[str] = Field(default_factory=list)
    tags: dict[str, list[int]] = Field(default_factory=dict)


class Security(BaseModel):
    roles: dict[str, Role] = Field(default_factory=dict)
    peppers: dict[str, SecretStr] = Field(default_factory=dict)
    encrypted_fields: list[str] = Field(default_factory=lambda: ["email", "ip"])


class Nested(BaseModel):
    users: list[User] = Field(default_factory=list)
    by_name: dict[str, User] = Field(default_factory=dict)
    groups: dict[str, list[str]] = Field(default_factory=dict)
    matrix: list[list[int]] = Field(default_factory=list)
    labels: Mapping[str, str] = Field(default_factory=dict)
    names: Sequence[str] = ("a", "b")
    unique: frozenset[str] = frozenset()
    plain_list: list = Field(default_factory=list)  # type: ignore[type-arg]
    plain_dict: dict = Field(default_factory=dict)  # type: ignore[type-arg]
    anything: Any = None
    optional: list[str] | None = None
    constrained: Annotated[list[int], Field(max_length=3)] = Field(default_factory=list)
    security: Security = Field(default_factory=Security)
    sections: list[Security] = Field(default_factory=list)

    @field_validator("constrained")
    @classmethod
    def _as_list(cls, value: Sequence[int]) -> list[int]:
        return list(value)  # a validator handing back a list must not leak it


YAML = """
users:
  - password: first-user-password
    roles: [admin, auditor]
    tags: {a: [1, 2]}
  - roles: []
by_name:
  carol: {roles: [viewer], tags: {x: [3]}}
groups: {ops: [alice, bob], empty: []}
matrix: [[1, 2], [3]]
labels: {team: orders}
names: [x, y]
unique: [p, q]
plain_list: [1, [2, {three: 3}]]
plain_dict: {k: [1, {n: [2]}]}
anything: {deep: [{deeper: [1]}], set: [1]}
optional: [one]
constrained: [1, 2]
security:
  roles:
    admin: {permissions: ["orders:read"], scopes: [s1]}
  peppers: {v1: a-pepper-value-long-enough}
sections:
  - encrypted_fields: [name]
"""


@pytest.fixture
def loaded(write: WriteFile) -> Nested:
    write("config/base.yaml", YAML)
    environ = {"SAASFW_GROUPS__DEV": '["dora"]', "SAASFW_SECURITY__PEPPERS__V2": "pepper-two"}
    return load_model(Nested, service="orders", env="test", environ=environ)


def test_every_nested_container_refuses_every_mutation(loaded: Nested) -> None:
    checked = assert_deeply_immutable(loaded)
    # The models, tuples, frozensets and mappings the YAML above creates, all reached.
    assert checked > 40
    assert isinstance(loaded.users, tuple)
    assert isinstance(loaded.users[0].tags, FrozenDict)
    assert loaded.users[0].tags["a"] == (1, 2)
    assert isinstance(loaded.security.roles["admin"].scopes, frozenset)
    assert isinstance(loaded.groups["ops"], tuple)
    assert loaded.groups["dev"] == ("dora",)
    assert isinstance(loaded.anything["deep"][0]["deeper"], tuple)
    assert isinstance(loaded.plain_dict["k"][1], FrozenDict)
    assert loaded.constrained == (1, 2)
    assert isinstance(loaded.constrained, tuple)
    assert isinstance(loaded.security.encrypted_fields, tuple)


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda s: s.users[0].roles.append("root"), AttributeError),
        (lambda s: s.groups["ops"].append("mallory"), AttributeError),
        (lambda s: s.groups.__setitem__("ops", ()), TypeError),
        (lambda s: s.groups.update(ops=()), TypeError),
        (lambda s: s.groups.pop("ops"), TypeError),
        (lambda s: s.groups.clear(), TypeError),
        (lambda s: s.groups.setdefault("new", ()), TypeError),
        (lambda s: s.groups.popitem(), TypeError),
        (lambda s: s.groups.__delitem__("ops"), TypeError),
        (lambda s: s.groups.__ior__({"x": ()}), TypeError),
        (lambda s: s.groups.__init__({"x": ()}), None),  # a no-op, checked below
        (lambda s: s.security.peppers.__setitem__("v3", SecretStr("x")), TypeError),
        (lambda s: s.security.roles["admin"].permissions.append("*"), AttributeError),
        (lambda s: s.security.roles["admin"].scopes.add("*"), AttributeError),
        (lambda s: setattr(s.security, "encrypted_fields", ()), Exception),
    ],
)
def test_named_mutations_raise(loaded: Nested, mutate: Any, error: type[Exception] | None) -> None:
    before = loaded.model_dump(mode="json")
    if error is None:
        mutate(loaded)
    else:
        with pytest.raises(error):
            mutate(loaded)
    assert loaded.model_dump(mode="json") == before


def test_the_walker_finds_a_mutable_container() -> None:
    class Loose(BaseModel):
        items: list[int] = [1]
        inner: dict[str, list[int]] = {"a": [1]}

    with pytest.raises(AssertionError) as caught:
        assert_deeply_immutable(Loose())
    report = str(caught.value)
    assert "<root> (Loose) allowed: x.items = ..." in report
    assert "items (list) allowed: x[k] = v" in report
    assert "inner['a'] (list)" in report
    assert "inner (dict) allowed" in report
    assert mutation_attempts((1, 2)) == []
    assert mutation_attempts(frozenset({1})) == []
    assert mutation_attempts(FrozenDict(a=1)) == []


def test_dumps_schema_equality_and_report_still_work(write: WriteFile, loaded: Nested) -> None:
    dumped = loaded.model_dump(mode="json")
    assert dumped["groups"] == {"ops": ["alice", "bob"], "empty": [], "dev": ["dora"]}
    assert dumped["unique"] in (["p", "q"], ["q", "p"])
    assert dumped["security"]["peppers"] == {"v1": "**********", "v2": "**********"}
    python = loaded.model_dump()
    assert type(python["groups"]) is dict
    assert python["groups"]["ops"] == ("alice", "bob")
    assert json.loads(loaded.model_dump_json())["matrix"] == [[1, 2], [3]]
    assert type(loaded).model_validate(loaded.model_dump()) == loaded
    assert type(loaded).model_validate_json(loaded.model_dump_json()).groups == loaded.groups
    schema = type(loaded).model_json_schema()
    assert schema["properties"]["groups"]["additionalProperties"]["type"] == "array"
    assert schema["properties"]["users"]["type"] == "array"
    assert loaded.groups == {"ops": ("alice", "bob"), "empty": (), "dev": ("dora",)}
    environ = {"SAASFW_GROUPS__DEV": '["dora"]', "SAASFW_SECURITY__PEPPERS__V2": "pepper-two"}
    assert load_model(Nested, service="orders", env="test", environ=environ) == loaded
    report = render_effective_settings(
        resolve_settings(Nested, service="orders", env="test", environ={}), "json"
    )
    data = json.loads(report)["settings"]
    assert data["users"][0]["password"] == "**********"
    assert data["by_name"]["carol"]["roles"] == ["viewer"]
    assert "first-user-password" not in report
    yaml_report = render_effective_settings(
        resolve_settings(Nested, service="orders", env="test", environ={})
    )
    assert "first-user-password" not in yaml_report
    assert "carol:" in yaml_report


def test_copies_and_pickles(loaded: Nested) -> None:
    assert copy.copy(loaded) == loaded
    deep = copy.deepcopy(loaded)
    assert deep == loaded
    assert_deeply_immutable(deep)
    groups = pickle.loads(pickle.dumps(loaded.groups))  # noqa: S301 - our own object
    assert groups == loaded.groups
    assert isinstance(groups, FrozenDict)
    users = pickle.loads(pickle.dumps(loaded.by_name))  # noqa: S301 - our own object
    assert users["carol"].roles == ("viewer",)
    whole = pickle.loads(pickle.dumps(loaded))  # noqa: S301 - our own object
    assert whole == loaded
    assert type(whole) is type(loaded)
    assert_deeply_immutable(whole)


def test_frozen_dict_behaves_like_a_read_only_dict() -> None:
    frozen = FrozenDict({"a": 1, "b": (2, 3)})
    assert frozen == {"a": 1, "b": (2, 3)}
    assert isinstance(frozen, dict)
    assert hash(frozen) == hash(FrozenDict({"b": (2, 3), "a": 1}))
    assert {frozen: "usable as a key"}[FrozenDict(b=(2, 3), a=1)] == "usable as a key"
    with pytest.raises(TypeError, match="unhashable"):
        hash(FrozenDict(a=[1]))
    merged = frozen | {"c": 4}
    assert isinstance(merged, FrozenDict)
    assert merged == {"a": 1, "b": (2, 3), "c": 4}
    assert frozen == {"a": 1, "b": (2, 3)}
    assert isinstance({"z": 0} | frozen, FrozenDict)
    assert json.loads(json.dumps(frozen)) == {"a": 1, "b": [2, 3]}
    assert FrozenDict.fromkeys("xy", 0) == {"x": 0, "y": 0}
    assert copy.copy(frozen) is frozen
    assert copy.deepcopy(frozen) == frozen
    assert repr(frozen) == "FrozenDict({'a': 1, 'b': (2, 3)})"
    mutable = dict(frozen)
    mutable["a"] = 5
    assert frozen["a"] == 1
    with pytest.raises(TypeError, match="read-only: loaded settings cannot be changed"):
        frozen["a"] = 2


def test_old_style_and_nested_generics_are_frozen_too(project: Path) -> None:
    import typing

    class OldStyle(BaseModel):
        bare_list: typing.List = Field(default_factory=lambda: [1])  # noqa: UP006
        bare_dict: typing.Dict = Field(default_factory=lambda: {"x": [1]})  # noqa: UP006
        bare_set: typing.Set = Field(default_factory=lambda: {1})  # noqa: UP006
        deep: typing.Optional[typing.List[typing.Dict[str, typing.List[int]]]] = None  # noqa: UP006, UP045
        pairs: tuple[list[int], ...] = ([1], [2])

    environ = {"SAASFW_DEEP": '[{"k": [1, 2]}]'}
    settings = load_model(OldStyle, service="orders", env="test", environ=environ)
    assert assert_deeply_immutable(settings) >= 10
    assert settings.deep == ({"k": (1, 2)},)
    assert settings.pairs == ((1,), (2,))
