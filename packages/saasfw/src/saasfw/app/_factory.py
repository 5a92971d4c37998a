"""``create_app``: one FastAPI application composed from every saasfw concern."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI

from saasfw.app._db import build_database, database
from saasfw.app._health import HealthChecks, health_router
from saasfw.app._inject import Provided, singletons_of
from saasfw.app._observability import build_observability
from saasfw.app._problem import UnhandledErrorMiddleware, install_problem_handlers
from saasfw.app._settings import ServiceSettings
from saasfw.config import LoadedSettings
from saasfw.db import Database, install_exception_handlers
from saasfw.observability import Observability, get_correlation_id

__all__ = ["create_app", "current_settings"]

_log = logging.getLogger("saasfw.app")

current_settings: Provided[ServiceSettings] = Provided("settings")
"""The service's settings as a dependency: ``Annotated[MySettings, Depends(current_settings)]``."""

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def create_app(
    settings: ServiceSettings | LoadedSettings[Any],
    *,
    routers: Sequence[APIRouter] = (),
    lifespan: Lifespan | None = None,
    singletons: Iterable[tuple[Provided[Any], Lifespan]] = (),
    observability: Observability | None = None,
    db: Database | None = None,
    title: str | None = None,
    description: str = "",
) -> FastAPI:
    """Compose a service from ``settings``, the user's ``routers`` and ``lifespan``.

    Middleware, outermost first: observability (correlation id, server span, RED metrics,
    access log), then the user's routes. One lifespan starts the framework's resources,
    then the ``singletons``, then the user's ``lifespan``, and stops them in reverse.

    Args:
        settings: the loaded settings (see :func:`saasfw.app.load_settings`).
        routers: the service's own routes.
        lifespan: the service's own lifespan, entered once the framework's resources are up.
        singletons: ``(key, factory)`` pairs: each factory returns an async context manager
            whose value the ``key`` dependency serves while the app runs.
        observability: a prebuilt :class:`~saasfw.observability.Observability` (tests pass
            one with a private registry); default: built from ``settings.observability``.
        db: a prebuilt :class:`~saasfw.db.Database`; default: built from ``settings.db``
            with actor and tenant from the verified principal.
        title: OpenAPI title (default: the service name).
        description: OpenAPI description.
    """
    if isinstance(settings, LoadedSettings):
        settings = settings.settings
    assert isinstance(settings, ServiceSettings)
    switches = settings.components
    checks = HealthChecks()
    extra_singletons = tuple(singletons)
    obs: Observability | None = None
    if switches.observability:
        obs = observability if observability is not None else build_observability(settings)
    the_db: Database | None = None
    if switches.database:
        the_db = db if db is not None else build_database(settings)
        checks.add("database", the_db.health_check, groups=("ready",))

    @asynccontextmanager
    async def composed_lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = singletons_of(app)
        store.put(current_settings, settings)
        async with AsyncExitStack() as stack:
            if obs is not None:
                await stack.enter_async_context(obs.lifespan())
            if the_db is not None:
                await stack.enter_async_context(the_db.lifespan())
                store.put(database, the_db)
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
                _log.info("%s stopping", settings.service)
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
    if switches.problem_details:
        install_problem_handlers(app, correlation_id=get_correlation_id)
        if the_db is not None:
            install_exception_handlers(app)
    if switches.health:
        app.include_router(health_router(checks))
    for router in routers:
        app.include_router(router)
    # Starlette makes the last middleware added the outermost: add innermost first.
    if switches.problem_details:
        app.add_middleware(UnhandledErrorMiddleware, correlation_id=get_correlation_id)
    if obs is not None:
        obs.install(app)
    return app
