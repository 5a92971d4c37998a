"""Test helpers for code that loads settings: prove a settings object is deeply immutable.

``assert_deeply_immutable(settings)`` walks every model, container and value reachable from
``settings`` and tries every mutating operation on each; any that succeeds fails the test
with the path of the offending value. Use it on a service's own loaded settings::

    from saasfw.config.testing import assert_deeply_immutable

    assert_deeply_immutable(load_model(MySettings, service="orders", env="test"))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["assert_deeply_immutable", "mutation_attempts"]

_Attempt = tuple[str, Callable[[Any], object]]

# Each is tried on every container; an immutable one must refuse all of them.
_CONTAINER_ATTEMPTS: tuple[_Attempt, ...] = (
    ("x[k] = v", lambda c: c.__setitem__(_any_key(c), None)),
    ("del x[k]", lambda c: c.__delitem__(_any_key(c))),
    ("x.append(v)", lambda c: c.append(None)),
    ("x.extend(...)", lambda c: c.extend([None])),
    ("x.insert(0, v)", lambda c: c.insert(0, None)),
    ("x.remove(v)", lambda c: c.remove(next(iter(c)))),
    ("x.pop()", lambda c: _pop(c)),
    ("x.popitem()", lambda c: c.popitem()),
    ("x.clear()", lambda c: c.clear()),
    ("x.update(...)", lambda c: c.update({_any_key(c): None})),
    ("x.setdefault(k)", lambda c: c.setdefault("__saasfw_probe__")),
    ("x.add(v)", lambda c: c.add("__saasfw_probe__")),
    ("x.discard(v)", lambda c: c.discard(next(iter(c)))),
    ("x.sort()", lambda c: c.sort()),
    ("x.reverse()", lambda c: c.reverse()),
    ("x |= ...", lambda c: c.__ior__({})),
    ("x += ...", lambda c: c.__iadd__([])),
    ("x -= ...", lambda c: c.__isub__(set())),
    ("x *= 2", lambda c: c.__imul__(2)),
)


def _pop(container: Any) -> object:
    method: Any = container.pop
    return method(_any_key(container)) if isinstance(container, Mapping) else method()


def _any_key(container: Any) -> Any:
    for key in container if isinstance(container, Mapping) else range(len(container)):
        return key
    return "__saasfw_probe__" if isinstance(container, Mapping) else 0


def mutation_attempts(value: Any) -> list[str]:
    """The mutating operations that ``value`` (one object, not its contents) allowed.

    Each operation is attempted; the ones that did not raise are returned. The object is
    changed by every operation that succeeded, so use it on objects that should refuse.
    """
    if isinstance(value, BaseModel):
        return [
            f"x.{name} = ..."
            for name in type(value).model_fields
            if not _refused(setattr, value, name, getattr(value, name))
        ]
    return [
        description for description, attempt in _CONTAINER_ATTEMPTS if not _refused(attempt, value)
    ]


def _refused(operation: Callable[..., object], *args: Any) -> bool:
    try:
        operation(*args)
    except Exception:  # any refusal counts: TypeError, AttributeError, ValidationError
        return True
    return False


def _children(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield f"{path}.{name}" if path else name, getattr(value, name)
        for name, extra in (value.__pydantic_extra__ or {}).items():
            yield f"{path}.{name}" if path else name, extra
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield f"{path}[{key!r}]", item
    elif isinstance(value, (tuple, list, set, frozenset)):
        for index, item in enumerate(value):
            yield f"{path}[{index}]", item


def _is_container(value: Any) -> bool:
    return isinstance(value, (BaseModel, Mapping, tuple, list, set, frozenset, bytearray))


def assert_deeply_immutable(settings: Any) -> int:
    """Fail (AssertionError) unless every model and container inside ``settings`` refuses change.

    Returns how many models and containers were checked, so a test can also assert that
    the walk reached what it expected to.
    """
    failures: list[str] = []
    checked = 0
    pending: list[tuple[str, Any]] = [("", settings)]
    seen: set[int] = set()
    while pending:
        path, value = pending.pop()
        if id(value) in seen or not _is_container(value):
            continue
        seen.add(id(value))
        checked += 1
        children = list(_children(value, path))  # before the attempts below change them
        allowed = mutation_attempts(value)
        if allowed:
            where = path or "<root>"
            failures.append(f"{where} ({type(value).__name__}) allowed: {', '.join(allowed)}")
        pending.extend(children)
    if failures:
        raise AssertionError(
            f"{len(failures)} mutable value(s) in the settings:\n  " + "\n  ".join(failures)
        )
    return checked
