"""What the loader needs to know about a pydantic model: field keys, nesting, secrets.

Also derives the strict, frozen twin of a model: a subclass with ``extra="forbid"`` and
``frozen=True`` at every nesting level, so unknown keys are errors even when a section model
(written by another package) left pydantic's default ``extra="ignore"``, and the loaded
object refuses attribute assignment everywhere. Its field types are deeply immutable too:
lists validate into tuples, sets into frozensets, dicts into ``FrozenDict``. The twin
subclasses the original, so ``isinstance(settings.db, DbSettings)`` still holds and
validators are inherited.
"""

from __future__ import annotations

import collections.abc
import threading
import types
import typing
from collections.abc import Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Secret, SecretBytes, SecretStr, model_validator
from pydantic.fields import FieldInfo

from saasfw.config._frozen import FrozenDict, freeze

M = TypeVar("M", bound=BaseModel)

_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_CONTAINERS = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.Set,
    collections.abc.MutableSequence,
    *_MAPPINGS,
)
_UNIONS = (typing.Union, types.UnionType)


def union_members(annotation: Any) -> tuple[Any, ...]:
    """The members of ``annotation`` with Annotated and Optional stripped."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return union_members(typing.get_args(annotation)[0])
    if origin in _UNIONS:
        members: list[Any] = []
        for arg in typing.get_args(annotation):
            members.extend(union_members(arg))
        return tuple(m for m in members if m is not type(None))
    return (annotation,)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def union_models(annotation: Any) -> list[type[BaseModel]]:
    """Every model class among the members of ``annotation``."""
    return [m for m in union_members(annotation) if _is_model(m)]


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class ``annotation`` nests, if it is (optionally) exactly one model."""
    models = [m for m in union_members(annotation) if _is_model(m)]
    return models[0] if len(models) == 1 else None


def mapping_value_type(annotation: Any) -> Any | None:
    """The value type when ``annotation`` is a ``dict``/``Mapping``, else None."""
    for member in union_members(annotation):
        origin = typing.get_origin(member) or member
        if origin in _MAPPINGS:
            args = typing.get_args(member)
            return args[1] if len(args) == 2 else Any
    return None


def sequence_item_type(annotation: Any) -> Any | None:
    """The item type when ``annotation`` is a list/tuple/set of one type, else None."""
    for member in union_members(annotation):
        origin = typing.get_origin(member)
        args = typing.get_args(member)
        if origin in _CONTAINERS and origin not in _MAPPINGS and args:
            return args[0]
    return None


def is_complex(annotation: Any) -> bool:
    """Whether an environment value for this field is JSON (models, lists, dicts, ...)."""
    for member in union_members(annotation):
        if _is_model(member):
            return True
        origin = typing.get_origin(member) or member
        if origin in _CONTAINERS:
            return True
    return False


def is_secret(annotation: Any) -> bool:
    for member in union_members(annotation):
        if isinstance(member, type) and issubclass(member, (SecretStr, SecretBytes, Secret)):
            return True
        if typing.get_origin(member) is Secret:
            return True
    return False


def field_key(name: str, info: FieldInfo) -> str:
    """The key a field is written under in data: its validation alias, else its name."""
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    return info.alias or name


def fields_by_key(model: type[BaseModel]) -> dict[str, tuple[str, FieldInfo]]:
    return {field_key(name, info): (name, info) for name, info in model.model_fields.items()}


def find_field(model: type[BaseModel], segment: str) -> tuple[str, FieldInfo] | None:
    """Case-insensitive lookup of a field by key or name (environment variable segments)."""
    wanted = segment.lower()
    for name, info in model.model_fields.items():
        key = field_key(name, info)
        if key.lower() == wanted or name.lower() == wanted:
            return key, info
    return None


def annotation_at(model: type[BaseModel], path: tuple[str | int, ...]) -> Any | None:
    """The annotation of the field at ``path`` (through models, dicts and lists), if known."""
    annotation: Any = model
    for part in path:
        nested = model_of(annotation)
        if nested is not None:
            if not isinstance(part, str) or part not in fields_by_key(nested):
                return None
            annotation = fields_by_key(nested)[part][1].annotation
            continue
        value_type = mapping_value_type(annotation)
        if value_type is not None:
            annotation = value_type
            continue
        items = [typing.get_args(m) for m in union_members(annotation)]
        args = next((a for a in items if a), None)
        if isinstance(part, int) and args:
            annotation = args[0]
            continue
        return None
    return annotation


def _mask_url_password(value: Any) -> Any:
    text = value if isinstance(value, str) else None
    if (
        text is None
        and type(value).__module__.startswith("pydantic")
        and "Url" in type(value).__name__
    ):
        text = str(value)
    if text is None or "://" not in text:
        return value
    try:
        password = urlsplit(text).password
    except ValueError:
        return value
    if not password:
        return value
    return text.replace(f":{password}@", ":**********@", 1)


def _masked_repr_args(self: BaseModel) -> Iterator[tuple[str | None, Any]]:
    """``repr``/``str`` of loaded settings hide the password inside URL-valued fields."""
    for name, value in BaseModel.__repr_args__(self):
        yield name, _mask_url_password(value)


def _reduce_twin(self: BaseModel) -> tuple[Any, ...]:
    """Pickle a twin by its original model: the twin class itself is not importable."""
    return _new_twin, (type(self).__bases__[0],), self.__getstate__()


def _new_twin(model: type[BaseModel]) -> BaseModel:
    twin = harden(model)
    return twin.__new__(twin)


_LOCK = threading.Lock()
_HARDENED: dict[type[BaseModel], type[BaseModel]] = {}
_IN_PROGRESS: set[type[BaseModel]] = set()


def harden(model: type[M]) -> type[M]:
    """The strict, frozen twin of ``model`` (cached; see the module docstring)."""
    with _LOCK:
        return _harden_model(model)


def _harden_model(model: type[M]) -> type[M]:
    cached = _HARDENED.get(model)
    if cached is not None:
        return typing.cast("type[M]", cached)
    if model in _IN_PROGRESS:  # a recursive model: keep the self-reference as it is
        return model
    _IN_PROGRESS.add(model)
    try:
        namespace: dict[str, Any] = {
            "__module__": model.__module__,
            "__qualname__": model.__qualname__,
            "__doc__": model.__doc__,
            # validate_default + from_attributes turn a default section instance of the
            # original (mutable) class into the frozen twin instead of leaking it through.
            "__repr_args__": _masked_repr_args,
            "__reduce__": _reduce_twin,
            "model_config": ConfigDict(
                frozen=True, extra="forbid", validate_default=True, from_attributes=True
            ),
        }
        annotations: dict[str, Any] = {}
        to_freeze: list[str] = []
        for name, info in model.model_fields.items():
            hardened = _harden_type(info.annotation)
            if hardened is not info.annotation:
                annotations[name] = hardened
                namespace[name] = info
                to_freeze.append(name)
            elif _may_hold_anything(info.annotation):
                to_freeze.append(name)
        namespace["__annotations__"] = annotations
        if to_freeze:
            namespace["_saasfw_freeze"] = _freezer(tuple(to_freeze))
        twin = typing.cast("type[M]", type(model.__name__, (model,), namespace))
    finally:
        _IN_PROGRESS.discard(model)
    _HARDENED[model] = twin
    return twin


def _may_hold_anything(annotation: Any) -> bool:
    """Whether a field typed ``annotation`` may hold a list or dict pydantic leaves as is."""
    return any(m is Any or m is object for m in union_members(annotation))


def _freezer(names: tuple[str, ...]) -> Any:
    """An after-validator making these fields' values immutable.

    The field types already validate into tuples, frozensets and ``FrozenDict``; this
    catches what they cannot: an inherited validator that returns a list, an ``Any`` field.
    """

    def freeze_fields(self: BaseModel) -> BaseModel:
        values = self.__dict__
        for name in names:
            values[name] = freeze(values[name])  # frozen model: write around __setattr__
        return self

    return model_validator(mode="after")(freeze_fields)


_SEQUENCES = (list, collections.abc.Sequence, collections.abc.MutableSequence)
_SETS = (set, frozenset, collections.abc.Set, collections.abc.MutableSet)
_DICTS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def _harden_type(annotation: Any) -> Any:
    """``annotation`` with nested models hardened and mutable containers made immutable."""
    if _is_model(annotation):
        return _harden_model(annotation)
    if annotation in _SEQUENCES:
        return tuple[Any, ...]
    if annotation in _SETS:
        return frozenset[Any]
    if annotation in _DICTS:
        return FrozenDict[Any, Any]
    origin = typing.get_origin(annotation)
    if origin is None:
        return annotation
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        inner = _harden_type(args[0])
        if inner is args[0]:
            return annotation
        return typing.Annotated[(inner, *annotation.__metadata__)]
    new_args = tuple(_harden_type(a) if not isinstance(a, list) else a for a in args)
    frozen = _frozen_container(origin, new_args)
    if frozen is not None:
        return frozen
    if all(n is o for n, o in zip(new_args, args, strict=True)):
        return annotation
    if origin in _UNIONS:
        return typing.Union[new_args]  # noqa: UP007 - built from a runtime tuple
    try:
        return annotation.copy_with(new_args)
    except AttributeError:
        return origin[new_args] if len(new_args) > 1 else origin[new_args[0]]


def _frozen_container(origin: Any, args: tuple[Any, ...]) -> Any | None:
    """The immutable counterpart of a list/set/dict annotation, None for anything else."""
    if not args:  # typing.List, typing.Dict: no parameters
        args = (Any, Any) if origin in _DICTS else (Any,)
    if origin in _SEQUENCES and len(args) == 1:
        return tuple[args[0], ...]  # type: ignore[valid-type]
    if origin in _SETS and len(args) == 1:
        return frozenset[args[0]]  # type: ignore[valid-type]
    if origin in _DICTS and len(args) == 2:
        return FrozenDict[args[0], args[1]]  # type: ignore[valid-type]
    return None
