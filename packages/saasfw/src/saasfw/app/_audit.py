"""Wiring saasfw.audit: the actor, correlation and trace ports; the auditors' router.

(No postponed annotations: the router's dependency is built in a function and names a
local, which FastAPI resolves at definition time.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException

from saasfw.app._inject import Provided
from saasfw.app._settings import ServiceSettings
from saasfw.audit import Actor, AuditLogger
from saasfw.observability import current_trace_ids, get_correlation_id
from saasfw.security import Authenticator, Principal, get_current_principal, require

__all__ = ["audit_actor", "audit_logger", "build_audit_logger", "build_audit_router"]

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
