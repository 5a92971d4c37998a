"""Wiring saasfw.audit: the actor, correlation and trace ports."""

from __future__ import annotations

from saasfw.app._inject import Provided
from saasfw.app._settings import ServiceSettings
from saasfw.audit import Actor, AuditLogger
from saasfw.observability import current_trace_ids, get_correlation_id
from saasfw.security import Principal, get_current_principal

__all__ = ["audit_actor", "audit_logger", "build_audit_logger"]

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
