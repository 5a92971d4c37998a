"""The verified identity of the current request, kept in a contextvar.

A contextvar (not a process-wide slot) so concurrent requests, asyncio tasks and threads
started with ``contextvars.copy_context`` each see their own principal.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "AuthMethod",
    "Principal",
    "PrincipalKind",
    "get_current_principal",
    "principal_scope",
    "reset_current_principal",
    "set_current_principal",
]

PrincipalKind = Literal["user", "service", "api_key", "mtls"]
AuthMethod = Literal["jwt", "api_key", "mtls", "session", "password"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as established by a verifier; never built from client headers.

    Attributes:
        id: stable subject identifier (JWT ``sub``, API key id, mapped certificate name).
        kind: what sort of caller this is.
        auth_method: how the identity was proven.
        tenant: tenant the principal belongs to, or None for a tenant-less principal.
        roles: role names, expanded to permissions by an :class:`RbacPolicy`.
        permissions: permissions granted directly (JWT scopes, API key scopes).
        claims: the verified claims the principal was built from (JWT only), read-only.
    """

    id: str
    kind: PrincipalKind
    auth_method: AuthMethod
    tenant: str | None = None
    roles: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    claims: tuple[tuple[str, object], ...] = field(default=(), repr=False, compare=False)

    def claim(self, name: str) -> object | None:
        """Return one verified claim, or None."""
        for key, value in self.claims:
            if key == name:
                return value
        return None


_current_principal: ContextVar[Principal | None] = ContextVar(
    "saasfw_security_principal", default=None
)


def get_current_principal() -> Principal | None:
    """Return the verified principal of the current request/task, or None."""
    return _current_principal.get()


def set_current_principal(principal: Principal | None) -> Token[Principal | None]:
    """Set the principal for the current context; keep the token to reset it."""
    return _current_principal.set(principal)


def reset_current_principal(token: Token[Principal | None]) -> None:
    """Restore the principal that was current before :func:`set_current_principal`."""
    _current_principal.reset(token)


@contextlib.contextmanager
def principal_scope(principal: Principal | None) -> Iterator[Principal | None]:
    """Run a block (a job, a gRPC call) as ``principal``, restoring the previous one after."""
    token = _current_principal.set(principal)
    try:
        yield principal
    finally:
        _current_principal.reset(token)
