"""The one lifespan of a composed app: every part in order, then the service's own.

Start-up enters each part's lifespan in the order the factory lists the parts and leaves
it as a bounded, reported shutdown hook (hooks run last-registered first, so the part
started first, observability, stops last and the other hooks' spans still export). Then
the service's singletons and its own lifespan are entered. At shutdown readiness turns
503 first (saasfw.k8s's Lifecycle), the service's lifespan and singletons exit, then the
parts' hooks run.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from saasfw.app._inject import Provided, singletons_of
from saasfw.app._part import Part
from saasfw.app._settings import ServiceSettings
from saasfw.k8s import Lifecycle

__all__ = ["Lifespan", "compose_lifespan", "current_settings"]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]

current_settings: Provided[ServiceSettings] = Provided("settings")
"""The service's effective settings: ``Annotated[MySettings, Depends(current_settings)]``."""

_log = logging.getLogger("saasfw.app")


async def _enter_as_hook(
    life: Lifecycle, name: str, manager: AbstractAsyncContextManager[Any], budget: float
) -> None:
    """Enter ``manager`` now; leave it as a bounded, reported shutdown hook."""
    await manager.__aenter__()

    async def leave() -> None:
        await manager.__aexit__(None, None, None)

    life.add_shutdown_hook(name, leave, timeout=budget)


def compose_lifespan(
    settings: ServiceSettings,
    parts: Sequence[Part[Any]],
    life: Lifecycle,
    *,
    singletons: Iterable[tuple[Provided[Any], Lifespan]] = (),
    lifespan: Lifespan | None = None,
) -> Lifespan:
    """The lifespan that starts ``parts``, then ``singletons`` and the service's ``lifespan``."""
    extra = tuple(singletons)

    @asynccontextmanager
    async def composed(app: FastAPI) -> AsyncIterator[None]:
        store = singletons_of(app)
        store.put(current_settings, settings)
        for part in parts:
            if part.lifespan is not None:
                await _enter_as_hook(life, part.name, part.lifespan(app), part.budget)
            for key, value in part.provides:
                store.put(key, value)
        async with AsyncExitStack() as stack:
            for key, factory in extra:
                await stack.enter_async_context(store.entered(key, factory(app)))
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            _log.info("%s %s ready (%s)", settings.service, settings.version, settings.env)
            if settings.http.freeze_gc:
                # Everything built so far lives as long as the process: keep full
                # collections from re-scanning it on every cycle (bench/). Unfrozen at
                # shutdown, so apps built and stopped in one process are collected.
                gc.freeze()
            try:
                yield
            finally:
                if settings.http.freeze_gc:
                    gc.unfreeze()
            _log.info("%s draining", settings.service)

    return composed
