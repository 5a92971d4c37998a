"""``create_app``: one FastAPI application composed from every saasfw concern."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from saasfw.app._health import HealthChecks, health_router
from saasfw.app._inject import Provided, singletons_of
from saasfw.app._problem import install_problem_handlers
from saasfw.app._settings import ServiceSettings

__all__ = ["create_app", "current_settings"]

_log = logging.getLogger("saasfw.app")

current_settings: Provided[ServiceSettings] = Provided("settings")
"""The service's settings as a dependency: ``Annotated[MySettings, Depends(current_settings)]``."""

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def create_app(
    settings: ServiceSettings,
    *,
    routers: Sequence[APIRouter] = (),
    lifespan: Lifespan | None = None,
    singletons: Iterable[tuple[Provided[Any], Lifespan]] = (),
    title: str | None = None,
    description: str = "",
) -> FastAPI:
    """Compose a service from ``settings``, the user's ``routers`` and ``lifespan``.

    Args:
        settings: the loaded settings (see :func:`saasfw.app.load_settings`).
        routers: the service's own routes, mounted after the framework's middleware.
        lifespan: the service's own lifespan, entered after the framework's resources are up
            and left before they are shut down.
        singletons: ``(key, factory)`` pairs; each factory is an async context manager
            factory whose value is served by the ``key`` dependency while the app runs.
        title: OpenAPI title (default: the service name).
        description: OpenAPI description.
    """
    checks = HealthChecks()
    extra_singletons = tuple(singletons)

    @asynccontextmanager
    async def composed_lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = singletons_of(app)
        store.put(current_settings, settings)
        async with AsyncExitStack() as stack:
            for key, factory in extra_singletons:
                await stack.enter_async_context(store.entered(key, factory(app)))
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            checks.mark_started()
            _log.info("%s %s ready (%s)", settings.service, settings.version, settings.env)
            try:
                yield
            finally:
                checks.mark_stopping()
        store.remove(current_settings)

    app = FastAPI(
        title=title or settings.service,
        version=settings.version,
        description=description,
        lifespan=composed_lifespan,
        debug=False,
    )
    app.state.saasfw_settings = settings
    app.state.saasfw_health = checks
    install_problem_handlers(app)
    app.include_router(health_router(checks))
    for router in routers:
        app.include_router(router)
    return app
