"""``Part``: what one concern's wiring module hands the factory.

Every wiring module (``_observability``, ``_db``, ``_audit``, ``_auth``, ``_clients``,
``_messaging``, ``_problem``, ``_health``) has one ``wire_*`` function returning a
:class:`Part` (or None when the concern is switched off). ``create_app`` only composes
parts: it never reaches into a concern itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, FastAPI

from saasfw.app._inject import Provided

__all__ = ["Check", "Installer", "Part", "PartLifespan"]

T = TypeVar("T")

Installer = Callable[[FastAPI], None]
"""Adds something to the built app: a middleware, exception handlers, a route."""

PartLifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]
"""Entered at start-up (in part order); left as a bounded, reported shutdown hook."""

Check = tuple[str, Callable[[], Awaitable[Any]], float | None]
"""A readiness check: ``(name, check, timeout or None for the registry's default)``."""


@dataclass(frozen=True, slots=True)
class Part(Generic[T]):
    """One concern, built and ready to compose.

    Attributes:
        name: the concern, also the shutdown hook's name.
        component: the built component other parts may need (the database, the logger...).
        provides: dependencies served while the app runs, put in place after ``lifespan``
            is entered.
        lifespan: start-up and shutdown of the component (None: nothing to start).
        budget: seconds the shutdown side of ``lifespan`` may take.
        checks: readiness checks added to the health registry.
        degrading_checks: checks whose failure degrades the service without taking it out
            of rotation (reported ``DEGRADED``; a broker while the outbox holds events).
        middleware: installers by slot; the factory's one ordered list decides where each
            slot sits.
        setup: installers run once the app exists (exception handlers, global hooks).
        routers: routes the concern serves (after the service's own).
        responses: statuses any route may answer because of this concern (for OpenAPI).
    """

    name: str
    component: T
    provides: tuple[tuple[Provided[Any], Any], ...] = ()
    lifespan: PartLifespan | None = None
    budget: float = 5.0
    checks: tuple[Check, ...] = ()
    degrading_checks: tuple[Check, ...] = ()
    middleware: Mapping[str, Installer] = field(default_factory=dict)
    setup: tuple[Installer, ...] = ()
    routers: tuple[APIRouter, ...] = ()
    responses: tuple[int, ...] = ()
