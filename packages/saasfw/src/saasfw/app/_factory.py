"""``create_app``: one FastAPI application composed from every saasfw concern."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

from saasfw.app._audit import audit_logger, build_audit_logger, build_audit_router
from saasfw.app._auth import (
    AuthComponents,
    auth_components,
    build_auth,
    build_rate_limiter,
    security_events,
    start_revocation,
    trusted_proxies,
)
from saasfw.app._clients import ServiceClients, service_clients
from saasfw.app._db import build_database, create_schema_if_missing, database
from saasfw.app._devsecrets import DEV_ENVIRONMENTS
from saasfw.app._effective import effective_settings
from saasfw.app._errors import CircuitOpenError
from saasfw.app._inject import Provided, singletons_of
from saasfw.app._observability import build_observability
from saasfw.app._problem import (
    UnhandledErrorMiddleware,
    install_problem_handlers,
    problem_response,
    problem_responses,
)
from saasfw.app._ratelimit_metrics import register_rate_limit_metrics
from saasfw.app._settings import ServiceSettings
from saasfw.audit import (
    AuditLogger,
    AuditMiddleware,
    AuditUnavailableError,
    security_events_listener,
)
from saasfw.config import LoadedSettings
from saasfw.core import use_correlation_id
from saasfw.db import Database, install_exception_handlers
from saasfw.k8s import HealthProbeMiddleware, HealthRegistry, Lifecycle
from saasfw.observability import Observability, get_correlation_id
from saasfw.security import (
    ConfigurationError,
    JwksKeySet,
    RateLimiter,
    SecurityEvents,
    SecurityMiddleware,
    assert_routes_secured,
    install_rate_limiter,
    install_security,
)

__all__ = ["create_app", "current_settings", "health_registry", "lifecycle"]

_log = logging.getLogger("saasfw.app")

current_settings: Provided[ServiceSettings] = Provided("settings")
"""The service's effective settings: ``Annotated[MySettings, Depends(current_settings)]``."""

health_registry: Provided[HealthRegistry] = Provided("health")
"""The readiness/liveness registry; add your own checks to it from your lifespan."""

lifecycle: Provided[Lifecycle] = Provided("lifecycle")
"""The availability state and shutdown hooks (add your own hooks from your lifespan)."""

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def _jwks_of(auth: AuthComponents | None) -> JwksKeySet | None:
    verifier = auth.authenticator.jwt if auth is not None else None
    keys = getattr(verifier, "keys", None)
    return keys if isinstance(keys, JwksKeySet) else None


async def _circuit_open(request: Request, exc: Exception) -> Response:
    service = exc.service if isinstance(exc, CircuitOpenError) else "a dependency"
    retry_after = exc.retry_after if isinstance(exc, CircuitOpenError) else 1.0
    return problem_response(
        503,
        detail=f"A service this request needs ({service}) is unavailable; retry later.",
        instance=request.url.path,
        headers={"Retry-After": str(round(retry_after))},
        correlation_id=get_correlation_id(),
    )


def _report_audit_off(obs: Observability | None) -> None:
    """Production without audit runs only by the named override: say so, loudly and in metrics."""
    _log.warning(
        "audit is switched off in production by overrides.allow_audit_off: no audit trail is kept"
    )
    if obs is not None and obs.metrics is not None:
        registry = obs.metrics.registry
        gauge = _AUDIT_OFF_GAUGES.get(id(registry))
        if gauge is None:
            from prometheus_client import Gauge

            gauge = Gauge(
                "saasfw_audit_disabled",
                "1 while the service runs in production with audit switched off by override",
                registry=registry,
            )
            _AUDIT_OFF_GAUGES[id(registry)] = gauge
        gauge.set(1)


# One gauge per registry: two apps built in one process share the global registry.
_AUDIT_OFF_GAUGES: dict[int, Any] = {}


async def _audit_unavailable(request: Request, exc: Exception) -> Response:
    """A fail-closed audit sink refused the event: refuse the operation, never commit it."""
    retry_after = exc.retry_after if isinstance(exc, AuditUnavailableError) else 1.0
    return problem_response(
        503,
        code="audit.unavailable",
        detail="The audit trail cannot be written right now; the operation was not carried "
        "out. Retry later.",
        instance=request.url.path,
        headers={"Retry-After": str(max(1, round(retry_after)))},
    )


async def _enter_as_hook(
    life: Lifecycle, name: str, manager: AbstractAsyncContextManager[Any], budget: float
) -> Any:
    """Enter ``manager`` now; leave it as a bounded, reported shutdown hook."""
    value = await manager.__aenter__()

    async def leave() -> None:
        await manager.__aexit__(None, None, None)

    life.add_shutdown_hook(name, leave, timeout=budget)
    return value


def create_app(
    settings: ServiceSettings | LoadedSettings[Any],
    *,
    routers: Sequence[APIRouter] = (),
    lifespan: Lifespan | None = None,
    singletons: Iterable[tuple[Provided[Any], Lifespan]] = (),
    observability: Observability | None = None,
    db: Database | None = None,
    audit: AuditLogger | None = None,
    auth: AuthComponents | None = None,
    rate_limiter: RateLimiter | None = None,
    health: HealthRegistry | None = None,
    title: str | None = None,
    description: str = "",
) -> FastAPI:
    """Compose a service from ``settings``, the user's ``routers`` and ``lifespan``.

    Middleware, outermost first: health probes (they bypass everything below), observability
    (correlation id, server span, RED metrics, access log), unhandled-error problems, one
    security layer (security headers, CORS, request size limits (413/431), the global rate
    limit (429), the security context), the audit of state-changing requests, then the
    user's routes.

    One lifespan starts the database, the audit logger, the JWKS key set (fetched once when
    configured), the downstream clients, the ``singletons`` and the user's ``lifespan``. At
    shutdown readiness turns 503 first, the user's lifespan and singletons exit, then the
    audit log is flushed, the database closed and the spans exported, each within a
    bounded, reported hook.

    Every piece is switched by ``settings.components`` and replaced by passing a built one.

    Args:
        settings: the loaded settings (see :func:`saasfw.app.load_settings`).
        routers: the service's own routes.
        lifespan: the service's own lifespan, entered once the framework's resources are up.
        singletons: ``(key, factory)`` pairs: each factory returns an async context manager
            whose value the ``key`` dependency serves while the app runs.
        observability: prebuilt observability (tests pass one with a private registry).
        db: a prebuilt database.
        audit: a prebuilt (not started) audit logger.
        auth: prebuilt authentication components.
        rate_limiter: a prebuilt rate limiter.
        health: a prebuilt health registry.
        title: OpenAPI title (default: the service name).
        description: OpenAPI description.
    """
    if isinstance(settings, LoadedSettings):
        settings = settings.settings
    if not isinstance(settings, ServiceSettings):
        raise TypeError("create_app needs ServiceSettings (or saasfw.config LoadedSettings)")
    settings = effective_settings(settings)
    switches = settings.components
    registry = health or HealthRegistry(
        cache_ttl=settings.k8s.health.cache_ttl_seconds,
        default_timeout=settings.k8s.health.default_check_timeout_seconds,
    )
    life = Lifecycle(settings.k8s.lifecycle)
    extra_singletons = tuple(singletons)

    obs: Observability | None = None
    if switches.observability:
        obs = observability if observability is not None else build_observability(settings)
    the_db: Database | None = None
    if switches.database:
        the_db = db if db is not None else build_database(settings)
        registry.add("database", the_db.health_check, timeout=settings.db.health_timeout)
    the_audit: AuditLogger | None = None
    if switches.audit and settings.audit.enabled:
        the_audit = audit if audit is not None else build_audit_logger(settings)
        registry.add("audit", the_audit.check_health)
    elif settings.env == "production":
        _report_audit_off(obs)
    the_auth: AuthComponents | None = None
    events: SecurityEvents | None = None
    if switches.authentication:
        the_auth = auth or build_auth(
            settings,
            engine=the_db.engine if the_db is not None else None,
            schema=the_db.schema if the_db is not None else None,
        )
        events = the_auth.events
        if the_audit is not None:
            the_auth.events.subscribe(security_events_listener(the_audit))
    clients = ServiceClients.from_settings(
        settings.clients,
        tracer_provider=obs.tracer_provider if obs is not None else None,
    )
    # Always a limiter, so routes declaring RateLimit(...) keep working; switched off it
    # passes every check (saasfw.security's "enabled: false") and stores nothing.
    limiting = switches.rate_limiting and settings.security.rate_limit.enabled
    limiter = rate_limiter or build_rate_limiter(settings, events, enabled=limiting)
    if limiting and not settings.security.rate_limit.uses_memory_storage:
        registry.add("redis", limiter.health_check)
    if limiting and obs is not None and obs.metrics is not None:
        register_rate_limit_metrics(obs.metrics.registry, limiter)

    @asynccontextmanager
    async def composed(app: FastAPI) -> AsyncIterator[None]:
        store = singletons_of(app)
        store.put(current_settings, settings)
        store.put(health_registry, registry)
        store.put(lifecycle, life)
        if obs is not None:
            # Registered first, so it runs last: spans of the other hooks still export.
            await _enter_as_hook(life, "observability", obs.lifespan(), budget=5.0)
        if the_db is not None:
            await _enter_as_hook(life, "database", the_db.lifespan(), budget=5.0)
            store.put(database, the_db)
            if the_db.schema is not None and settings.env in DEV_ENVIRONMENTS:
                await create_schema_if_missing(the_db)
        if the_auth is not None:
            if switches.route_security_check:
                assert_routes_secured(app)
            await start_revocation(the_auth.revocation)
            store.put(auth_components, the_auth)
            store.put(security_events, the_auth.events)
        store.put(service_clients, clients)
        life.add_shutdown_hook("clients", clients.aclose, timeout=2.0)
        life.add_shutdown_hook("rate_limiter", limiter.aclose, timeout=2.0)
        jwks = _jwks_of(the_auth)
        if jwks is not None:
            try:
                await jwks.refresh()
            except Exception as exc:  # keep serving: tokens fail closed until keys arrive
                _log.error(
                    "JWKS unreachable at start-up (%s); bearer tokens fail until it answers",
                    type(exc).__name__,
                )
            life.add_shutdown_hook("jwks", jwks.aclose, timeout=2.0)
        if the_auth is not None:
            closer = getattr(the_auth.revocation, "aclose", None)
            if closer is not None:
                life.add_shutdown_hook("revocation", closer, timeout=2.0)
        if the_audit is not None:
            audit_started = the_audit
            audit_started.start()

            async def close_audit() -> None:
                report = await asyncio.to_thread(
                    audit_started.close, settings.audit.shutdown_timeout
                )
                if not report.complete:
                    _log.error("audit flush incomplete at shutdown: %s", report)

            life.add_shutdown_hook(
                "audit", close_audit, timeout=settings.audit.shutdown_timeout + 1.0
            )
            store.put(audit_logger, audit_started)
        async with AsyncExitStack() as stack:
            for key, factory in extra_singletons:
                await stack.enter_async_context(store.entered(key, factory(app)))
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            _log.info("%s %s ready (%s)", settings.service, settings.version, settings.env)
            if settings.http.freeze_gc:
                # Everything built so far lives as long as the process: keep full
                # collections from re-scanning it on every cycle (about a sixth of a
                # hello endpoint's throughput with every feature on, bench/). Unfrozen at
                # shutdown, so apps built and stopped in one process are collected.
                gc.freeze()
            try:
                yield
            finally:
                if settings.http.freeze_gc:
                    gc.unfreeze()
            _log.info("%s draining", settings.service)

    # Answers any route can give, documented once so clients and schema checks expect them.
    common = [400, 422, 500]
    if switches.request_limits:
        common += [413, 431]
    if limiting:
        common.append(429)
    if the_auth is not None:
        common += [401, 403]
    if the_db is not None or the_audit is not None:
        common.append(503)
    app = FastAPI(
        title=title or settings.service,
        version=settings.version,
        description=description,
        lifespan=life.wrap(composed),
        debug=False,
        responses=problem_responses(*common),
        # saasfw.observability's middleware makes the one server span per request, with the
        # service's own tracer provider; FastAPI's native tracing would make it instead.
        telemetry={"tracing": obs is None},
    )
    app.state.saasfw_settings = settings
    # Every problem body, whichever package writes it, carries the request's correlation id.
    use_correlation_id(get_correlation_id)
    if switches.problem_details:
        install_problem_handlers(app, correlation_id=get_correlation_id)
        app.add_exception_handler(CircuitOpenError, _circuit_open)
        app.add_exception_handler(AuditUnavailableError, _audit_unavailable)
        if the_db is not None:
            install_exception_handlers(app)
    for router in routers:
        app.include_router(router)
    if switches.audit_search and the_audit is not None:
        if the_db is None or the_auth is None or settings.audit.sql is None:
            raise ConfigurationError(
                "components.audit_search needs the database, authentication and an audit SQL "
                "sink (components.audit_in_database or audit.sql)"
            )
        app.include_router(
            build_audit_router(settings, the_audit, the_db.engine, the_auth.authenticator)
        )
    # Starlette makes the last middleware added the outermost: add innermost first.
    if the_audit is not None:
        # Inside the security context: the actor port still sees the request's principal.
        app.add_middleware(AuditMiddleware, logger=the_audit)
    if the_auth is not None:
        # The security context is part of the one security layer below.
        install_security(app, the_auth.authenticator, context=False)
    install_rate_limiter(app, limiter)
    # Security headers, CORS, request size limits, the global rate limit and the security
    # context: one pure ASGI layer (saasfw.security.SecurityMiddleware).
    app.add_middleware(
        SecurityMiddleware,
        headers=settings.security.headers if switches.security_headers else None,
        proxies=trusted_proxies(settings),
        cors=settings.security.cors if switches.security_headers else None,
        limits=settings.request_limits if switches.request_limits else None,
        limiter=limiter if limiting else None,
        security_context=the_auth is not None,
    )
    if switches.problem_details:
        app.add_middleware(UnhandledErrorMiddleware, correlation_id=get_correlation_id)
    if obs is not None:
        obs.install(app)
    if switches.health:
        app.add_middleware(
            HealthProbeMiddleware,
            registry=registry,
            lifecycle=life,
            prefix=settings.k8s.health.prefix,
        )
    return app
