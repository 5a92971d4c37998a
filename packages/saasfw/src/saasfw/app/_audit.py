"""Wiring saasfw.audit: actor, correlation and trace ports; security events into the trail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from saasfw.app._inject import Provided
from saasfw.app._settings import ServiceSettings
from saasfw.audit import Actor, AuditLogger, Resource
from saasfw.observability import current_trace_ids, get_correlation_id
from saasfw.security import Principal, SecurityEvent, get_current_principal

__all__ = ["audit_actor", "audit_logger", "build_audit_logger", "security_event_recorder"]

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


def security_event_recorder(logger: AuditLogger) -> Callable[[SecurityEvent], None]:
    """A security-events listener recording each event (cheap: it only enqueues).

    The actor is the event's principal (established by the verifier, or the claimed subject
    of a failed attempt, which the ``outcome`` marks), never a client header.
    """

    def record(event: SecurityEvent) -> None:
        actor = Actor(
            id=event.principal_id or "anonymous",
            kind="user" if event.principal_id else "anonymous",
            tenant=event.tenant,
            address=event.address,
        )
        details: dict[str, Any] = {str(k): v for k, v in event.details.items()}
        logger.record(
            event.type,
            outcome=event.outcome,
            actor=actor,
            resource=Resource("security"),
            details=details or None,
        )

    return record
