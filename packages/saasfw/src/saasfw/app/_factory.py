"""``create_app``: one FastAPI application composed from every saasfw concern.

Each concern is wired by its own module into a :class:`~saasfw.app._part.Part`; the
factory only composes them. Middleware, outermost first, is :data:`MIDDLEWARE_ORDER`:
health probes (they bypass everything below), observability (correlation id, server span,
RED metrics, access log), unhandled-error problems, one security layer (security headers,
CORS, request size limits (413/431), the global rate limit (429), the security context),
then the audit of state-changing requests, then the user's routes.

One lifespan starts the parts in order (observability, database, audit logger, security:
revocation listener and JWKS, downstream clients, the audit outbox relay), then the
service's singletons and its own lifespan. At shutdown readiness turns 503 first, the
service's lifespan and singletons exit, then the parts stop in reverse order, each within
a bounded, reported hook: the outbox drains before the audit log is flushed, and the
spans export last.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI

from saasfw.app._audit import wire_audit, wire_audit_search
from saasfw.app._audit_outbox import wire_audit_outbox
from saasfw.app._auth import AuthComponents, wire_security
from saasfw.app._clients import wire_clients
from saasfw.app._compose import Lifespan, compose_lifespan, current_settings
from saasfw.app._db import wire_database
from saasfw.app._docs_assets import install_offline_docs
from saasfw.app._effective import runtime_settings
from saasfw.app._health import health_registry, lifecycle, wire_health
from saasfw.app._inject import Provided
from saasfw.app._jobs import wire_jobs
from saasfw.app._messaging import EventHandlers, wire_messaging
from saasfw.app._observability import wire_observability
from saasfw.app._part import Part
from saasfw.app._problem import problem_responses, wire_problems
from saasfw.app._settings import ServiceSettings
from saasfw.audit import AuditLogger
from saasfw.config import LoadedSettings
from saasfw.core.jobs import Job
from saasfw.db import Database
from saasfw.k8s import HealthRegistry, Lifecycle
from saasfw.observability import Observability
from saasfw.security import ConfigurationError, RateLimiter

__all__ = ["MIDDLEWARE_ORDER", "create_app", "current_settings", "health_registry", "lifecycle"]

MIDDLEWARE_ORDER: tuple[str, ...] = (
    "health",
    "observability",
    "problems",
    "security",
    "rate_limit",
    "authentication",
    "audit",
)
"""The one middleware order, outermost first; each part fills its slots."""


def _settings_of(settings: ServiceSettings | LoadedSettings[Any]) -> ServiceSettings:
    if isinstance(settings, LoadedSettings):
        settings = settings.settings
    if not isinstance(settings, ServiceSettings):
        raise TypeError("create_app needs ServiceSettings (or saasfw.config LoadedSettings)")
    return runtime_settings(settings)


@dataclass(frozen=True, slots=True)
class _Given:
    """Components the caller built itself (tests pass private registries, for example)."""

    observability: Observability | None
    db: Database | None
    audit: AuditLogger | None
    auth: AuthComponents | None
    rate_limiter: RateLimiter | None
    migrations: str | os.PathLike[str] | None = None
    events: Sequence[EventHandlers] = ()
    jobs: Sequence[Job] = ()


def _search(settings: ServiceSettings, parts: Sequence[Part[Any] | None]) -> Part[None] | None:
    """The auditors' routes, when ``components.audit_search`` asks for them."""
    data, trail, guard = parts
    if not settings.components.audit_search or trail is None:
        return None
    if data is None or guard is None or guard.component is None or settings.audit.sql is None:
        raise ConfigurationError(
            "components.audit_search needs the database, authentication and an audit SQL "
            "sink (components.audit_in_database or audit.sql)"
        )
    return wire_audit_search(settings, trail.component, data.component.engine, guard.component)


def _parts(settings: ServiceSettings, given: _Given) -> list[Part[Any]]:
    """Every concern's part, in start-up order (a new concern adds one line here)."""
    obs = wire_observability(settings, given.observability)
    metrics = obs.component.metrics if obs is not None else None
    data = wire_database(settings, given.db, migrations=given.migrations)
    engine = data.component.engine if data is not None else None
    trail = wire_audit(settings, given.audit, observability=obs.component if obs else None)
    logger = trail.component if trail is not None else None
    guard = wire_security(
        settings,
        auth=given.auth,
        rate_limiter=given.rate_limiter,
        engine=engine,
        schema=data.component.schema if data is not None else None,
        audit=logger,
        metrics_registry=metrics.registry if metrics is not None else None,
    )
    tracer = obs.component.tracer_provider if obs is not None else None
    messaging = wire_messaging(
        settings,
        data.component if data else None,
        events=given.events,
        metrics_registry=metrics.registry if metrics is not None else None,
        tracer_provider=tracer,
    )
    jobs = [*given.jobs, *(messaging.component.jobs if messaging is not None else ())]
    parts = [
        obs,
        data,
        trail,
        guard,
        wire_clients(settings, tracer_provider=tracer),
        wire_audit_outbox(settings, logger, data.component if data else None),
        _search(settings, (data, trail, guard)),
        messaging,
        wire_jobs(
            settings,
            jobs,
            db=data.component if data else None,
            audit=logger,
            metrics_registry=metrics.registry if metrics is not None else None,
        ),
        wire_problems(settings.components.problem_details),
    ]
    return [part for part in parts if part is not None]


def _assemble(app: FastAPI, parts: Sequence[Part[Any]], routers: Sequence[APIRouter]) -> None:
    """Handlers, then routes (the service's first), then the middleware in the one order."""
    for part in parts:
        for install in part.setup:
            install(app)
    for router in (*routers, *(r for part in parts for r in part.routers)):
        app.include_router(router)
    install_offline_docs(app)  # /docs and /redoc from an installed package, never a CDN
    # Starlette makes the last middleware added the outermost: add innermost first.
    for slot in reversed(MIDDLEWARE_ORDER):
        for part in parts:
            if slot in part.middleware:
                part.middleware[slot](app)


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
    migrations: str | os.PathLike[str] | None = None,
    events: Sequence[EventHandlers] = (),
    jobs: Sequence[Job] = (),
    title: str | None = None,
    description: str = "",
) -> FastAPI:
    """Compose a service from ``settings``, the user's ``routers`` and ``lifespan``.

    Each concern's wiring module makes a part; this function composes them (the module
    docstring gives the middleware order and the lifespan). Every piece is switched by
    ``settings.components``; ``observability``, ``db``, ``audit`` (not started), ``auth``,
    ``rate_limiter`` and ``health`` replace the built ones. ``singletons`` are ``(key,
    factory)`` pairs: the ``key`` dependency serves the factory's context value.
    ``migrations`` is the service's Alembic versions directory: upgraded at start-up (unless
    ``db.migrate_on_start`` is off) and checked by readiness. ``events`` are the service's
    event handlers (``components.messaging``). ``jobs`` are periodic jobs, each run once
    per period across the fleet (``saasfw.Job``; they need the database).
    """
    settings = _settings_of(settings)
    given = _Given(observability, db, audit, auth, rate_limiter, migrations, events, jobs)
    parts = _parts(settings, given)
    life = Lifecycle(settings.k8s.lifecycle)
    parts.append(wire_health(settings, life, parts, health))
    statuses = sorted({400, 422, 500}.union(*(part.responses for part in parts)))
    app = FastAPI(
        title=title or settings.service,
        version=settings.version,
        description=description,
        lifespan=life.wrap(
            compose_lifespan(settings, parts, life, singletons=singletons, lifespan=lifespan)
        ),
        debug=False,
        responses=problem_responses(*statuses),
        # saasfw.observability's middleware makes the one server span per request.
        telemetry={"tracing": "observability" not in {part.name for part in parts}},
    )
    app.state.saasfw_settings = settings
    _assemble(app, parts, routers)
    return app
