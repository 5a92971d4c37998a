"""Immutable containers for loaded settings: ``FrozenDict`` and the deep freeze of a value.

The strict twin of a settings model (see ``_model``) validates lists into tuples, sets into
frozensets and dicts into ``FrozenDict``, so a loaded settings object cannot be changed in
place anywhere: not a user list, not a role's permissions, not a pepper map.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeVar

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

K = TypeVar("K")
V = TypeVar("V")


def _refuse(self: FrozenDict[Any, Any], *args: Any, **kwargs: Any) -> NoReturn:
    del args, kwargs
    raise TypeError(
        f"{type(self).__name__} is read-only: loaded settings cannot be changed in place; "
        "build a new mapping (dict(value) | {...}) or load the settings again"
    )


class FrozenDict(dict[K, V]):
    """A read-only ``dict``: equal to a dict with the same items, hashable when its values are.

    It stays a ``dict`` subclass so that code checking ``isinstance(value, dict)``, ``json``
    and pydantic's own dict serializer keep working; every mutating method raises
    ``TypeError``. (``dict.__setitem__(d, k, v)`` called on the base class directly still
    bypasses this, as ``object.__setattr__`` bypasses a frozen model: that is deliberate
    code, not an accident.)
    """

    __slots__ = ("_hash",)

    def __new__(cls, *args: Any, **kwargs: Any) -> FrozenDict[K, V]:
        self = super().__new__(cls)
        # dict.__init__ fills a dict subclass without calling our __setitem__.
        dict.__init__(self, *args, **kwargs)
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Filled in __new__; calling __init__ again must not refill an existing mapping.
        del args, kwargs

    __setitem__ = _refuse
    __delitem__ = _refuse
    __ior__ = _refuse
    clear = _refuse
    pop = _refuse
    popitem = _refuse
    setdefault = _refuse
    update = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        try:
            return self._hash
        except AttributeError:
            self._hash: int = hash(frozenset(self.items()))
            return self._hash

    def __or__(self, other: Any) -> Any:
        if not isinstance(other, Mapping):
            return NotImplemented
        return FrozenDict({**self, **other})

    def __ror__(self, other: Any) -> Any:
        if not isinstance(other, Mapping):
            return NotImplemented
        return FrozenDict({**other, **self})

    def __copy__(self) -> FrozenDict[K, V]:
        return self  # immutable: a copy would be indistinguishable

    def __reduce__(self) -> tuple[type[FrozenDict[K, V]], tuple[dict[K, V]]]:
        # The default reduction of a dict subclass refills it item by item (__setitem__).
        return type(self), (dict(self),)

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"

    @classmethod
    def fromkeys(cls, iterable: Iterable[Any], value: Any = None) -> Any:
        return cls((key, value) for key in iterable)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        # Validated and serialized exactly like dict[K, V], then wrapped; JSON schema too.
        args = typing.get_args(source)
        keys, values = args if len(args) == 2 else (Any, Any)
        return core_schema.no_info_after_validator_function(
            cls,
            handler.generate_schema(dict[keys, values]),  # type: ignore[valid-type]
        )


def freeze(value: Any) -> Any:
    """``value`` with every list, set and dict inside it (recursively) made immutable.

    Already immutable values come back as the same object; models are left to their own
    (frozen) validation; anything else is returned as it is.
    """
    if isinstance(value, dict):
        items = {key: freeze(item) for key, item in value.items()}
        if type(value) is FrozenDict and all(items[k] is v for k, v in value.items()):
            return value
        return FrozenDict(items)
    if isinstance(value, (list, tuple)):
        members = tuple(freeze(item) for item in value)
        if isinstance(value, tuple) and all(a is b for a, b in zip(members, value, strict=True)):
            return value
        return _same_kind(value, members)
    if isinstance(value, (set, frozenset)):
        if type(value) is frozenset and all(freeze(item) is item for item in value):
            return value
        return frozenset(freeze(item) for item in value)
    if isinstance(value, bytearray):
        return bytes(value)
    return value


def _same_kind(value: Any, items: tuple[Any, ...]) -> Any:
    """A named tuple stays that named tuple; a list (or a list subclass) becomes a tuple."""
    if isinstance(value, tuple) and type(value) is not tuple:
        make: Callable[..., Any] = type(value)
        return make(*items) if hasattr(value, "_fields") else make(items)
    return items
