"""Wiring saasfw.audit: the actor, correlation and trace ports; the auditors' router.

(No postponed annotations: the router's dependency is built in a function and names a
local, which FastAPI resolves at definition time.)
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response

from saasfw.app._effective import effective_for
from saasfw.app._inject import Provided
from saasfw.app._part import Part
from saasfw.app._problem import problem_response
from saasfw.app._settings import ServiceSettings
from saasfw.audit import (
    Actor,
    AuditLogger,
    AuditUnavailableError,
    audit_production_problems,
)
from saasfw.config import ProductionRule, RuleContext, Violation
from saasfw.observability import Observability, current_trace_ids, get_correlation_id
from saasfw.security import Authenticator, Principal, get_current_principal, require

__all__ = [
    "audit_actor",
    "audit_logger",
    "audit_rules",
    "build_audit_logger",
    "build_audit_router",
    "wire_audit",
    "wire_audit_search",
]

_log = logging.getLogger("saasfw.app")

audit_logger: Provided[AuditLogger] = Provided("audit_logger")
"""The service's :class:`~saasfw.audit.AuditLogger` as a dependency (lifespan singleton)."""


def actor_of(principal: Principal) -> Actor:
    """The audit actor for a verified principal."""
    return Actor(id=principal.id, kind=principal.kind, tenant=principal.tenant)


def audit_actor() -> Actor | None:
    """Audit's ``ActorProvider``: the verified principal of the current request, or None."""
    principal = get_current_principal()
    return actor_of(principal) if principal is not None else None


def build_audit_logger(settings: ServiceSettings) -> AuditLogger:
    """The logger ``settings.audit`` describes, with the ports wired (not started)."""
    return settings.audit.build_logger(
        actor_provider=audit_actor,
        correlation_id_provider=get_correlation_id,
        trace_ids_provider=current_trace_ids,
    )


def build_audit_router(
    settings: ServiceSettings, logger: AuditLogger, engine: Any, authenticator: Authenticator
) -> APIRouter:
    """saasfw.audit's auditors' router on the service database, confined to the caller's tenant.

    ``audit:read`` lets a principal search its own tenant's events; ``audit:decrypt`` also
    shows the encrypted fields in clear. Every query is itself audited (by the router).
    """
    # Search and its router only for a service that serves them (saasfw.audit loads them
    # on first use).
    from saasfw.audit import Auditor, AuditSearch, create_audit_router

    schema = settings.audit.sql.schema_name if settings.audit.sql is not None else None
    search = AuditSearch(engine, schema=schema, cipher=settings.audit.field_cipher())
    policy = authenticator.policy
    read = require("audit:read")

    async def auditor(principal: Annotated[Principal, Depends(read)]) -> Auditor:
        if principal.tenant is None:
            raise HTTPException(403, "audit data is confined to a tenant; this caller has none")
        return Auditor(
            principal.id,
            principal.tenant,
            can_decrypt=policy.is_allowed(principal, "audit:decrypt"),
        )

    router: APIRouter = create_audit_router(search, logger, auditor=auditor)
    return router


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


def _install_unavailable(app: FastAPI) -> None:
    app.add_exception_handler(AuditUnavailableError, _audit_unavailable)


# One gauge per registry: two apps built in one process share the global registry.
_AUDIT_OFF_GAUGES: dict[int, Any] = {}


def _report_audit_off(obs: Observability | None) -> None:
    """Production without audit runs only by the named override: say so, loudly and in metrics."""
    _log.warning(
        "audit is switched off in production by overrides.allow_audit_off: no audit trail is kept"
    )
    if obs is None or obs.metrics is None:
        return
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


def wire_audit(
    settings: ServiceSettings,
    given: AuditLogger | None = None,
    *,
    observability: Observability | None = None,
) -> Part[AuditLogger] | None:
    """The audit logger as a part: started with the app, flushed and closed at shutdown.

    None when audit is off; in production that takes ``overrides.allow_audit_off`` (the
    production rules refuse it otherwise), and it is reported in the log and a gauge.
    """
    if not (settings.components.audit and settings.audit.enabled):
        if settings.env == "production":
            _report_audit_off(observability)
        return None
    logger = given if given is not None else build_audit_logger(settings)
    timeout = settings.audit.shutdown_timeout

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logger.start()
        yield
        report = await asyncio.to_thread(logger.close, timeout)
        if not report.complete:
            _log.error("audit flush incomplete at shutdown: %s", report)

    def middleware(app: FastAPI) -> None:
        from saasfw.audit import AuditMiddleware

        # Inside the security context: the actor port still sees the request's principal.
        app.add_middleware(AuditMiddleware, logger=logger)

    handlers = (_install_unavailable,) if settings.components.problem_details else ()
    return Part(
        "audit",
        logger,
        provides=((audit_logger, logger),),
        lifespan=lifespan,
        budget=timeout + 1.0,
        checks=(("audit", logger.check_health, None),),
        middleware={"audit": middleware},
        setup=handlers,
        responses=(503,),
    )


def wire_audit_search(
    settings: ServiceSettings, logger: AuditLogger, engine: Any, authenticator: Authenticator
) -> Part[None]:
    """The auditors' search routes (``components.audit_search``) as a part."""
    router = build_audit_router(settings, logger, engine, authenticator)
    return Part("audit_search", None, routers=(router,))


def _rule(raw: Any, context: RuleContext) -> Iterator[str | Violation]:
    effective = effective_for(raw, context)
    if effective is None or not effective.components.audit or not effective.audit.enabled:
        return
    audit = effective.audit
    yield from audit_production_problems(audit)
    if audit.file is None and audit.sql is None and audit.syslog is None and not audit.console:
        yield Violation(
            "audit",
            "audit is enabled but has no sink: set audit.file.path (with the chain key and "
            "checkpoints), audit.sql or audit.syslog",
            "audit.file",
        )


def audit_rules() -> list[ProductionRule]:
    """saasfw.audit's production checks on the effective audit section."""
    return [
        ProductionRule(
            "audit",
            _rule,
            description="the audit trail has a sink, a chain key, checkpoints and keys",
        )
    ]
