"""Port adapters: what one concern package needs, answered from another's public API.

These are the only places where two concern packages meet; each function is a plain
callable matching the port its consumer declares.
"""

from __future__ import annotations

from saasfw.security import get_current_principal

__all__ = ["actor_id", "tenant_id"]


def actor_id() -> str | None:
    """The verified principal's id (db's ``ActorProvider``); never read from a header."""
    principal = get_current_principal()
    return principal.id if principal is not None else None


def tenant_id() -> str | None:
    """The verified principal's tenant (db's ``TenantProvider``)."""
    principal = get_current_principal()
    return principal.tenant if principal is not None else None
