"""Lifespan-scoped singletons exposed as FastAPI dependencies.

A :class:`Provided` is a typed key and, at the same time, the dependency callable that
returns the value the lifespan stored under it. Because it is an ordinary dependency it is
overridden in tests the FastAPI way: ``app.dependency_overrides[key] = lambda: fake``.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Generic, TypeVar, cast

from fastapi import FastAPI
from starlette.requests import HTTPConnection

__all__ = ["Provided", "Singletons", "singletons_of"]

T = TypeVar("T")


class Provided(Generic[T]):
    """A named, typed lifespan singleton; call it (as a dependency) to get the value.

    (This module avoids postponed annotations: FastAPI resolves the annotations of
    ``__call__`` at runtime, and an instance has no module globals to resolve them in.)

    Example::

        clock = Provided[Clock]("clock")
        ClockDep = Annotated[Clock, Depends(clock)]
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Provided({self.name!r})"

    def __call__(self, connection: HTTPConnection) -> T:
        return singletons_of(connection.app).get(self)


class Singletons:
    """The values of one application's :class:`Provided` keys, filled by its lifespan."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def put(self, key: Provided[T], value: T) -> None:
        """Store ``value`` under ``key`` (replacing any earlier value)."""
        self._values[key.name] = value

    def remove(self, key: Provided[Any]) -> None:
        """Forget ``key`` (at shutdown)."""
        self._values.pop(key.name, None)

    def get(self, key: Provided[T]) -> T:
        """Return the value of ``key``; a clear error when the lifespan has not stored it."""
        try:
            return cast("T", self._values[key.name])
        except KeyError:
            raise LookupError(
                f"{key.name!r} is not available: it is created by the application's lifespan "
                "(is the app running under a server or a TestClient context manager?) "
                "or was switched off in settings"
            ) from None

    def has(self, key: Provided[Any]) -> bool:
        """Whether ``key`` currently holds a value."""
        return key.name in self._values

    @asynccontextmanager
    async def entered(
        self, key: Provided[T], manager: AbstractAsyncContextManager[T]
    ) -> AsyncIterator[T]:
        """Enter ``manager``, store its value under ``key`` while it is open."""
        async with manager as value:
            self.put(key, value)
            try:
                yield value
            finally:
                self.remove(key)


def singletons_of(app: Any) -> Singletons:
    """The :class:`Singletons` of ``app`` (created on first use)."""
    state = app.state
    found = getattr(state, "saasfw_singletons", None)
    if found is None:
        found = Singletons()
        state.saasfw_singletons = found
    return cast("Singletons", found)


SingletonFactory = Callable[[FastAPI], AbstractAsyncContextManager[Any]]
