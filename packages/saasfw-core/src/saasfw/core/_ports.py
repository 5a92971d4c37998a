"""The port protocols that cross package lines: who acts, for which tenant, in which request.

A concern that needs one of these values declares a parameter of the protocol's type; the
concern that owns the value (security owns the principal, observability the correlation
id) provides a callable of that shape, and ``saasfw.app`` wires one to the other. Each is a
plain zero-argument callable, so a standalone user wires it with a lambda.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ActorIdProvider", "CorrelationIdProvider", "TenantProvider"]


class ActorIdProvider(Protocol):
    """The id of the verified principal acting in the current context, or None."""

    def __call__(self) -> str | None: ...


class TenantProvider(Protocol):
    """The tenant the current context acts for, or None."""

    def __call__(self) -> str | None: ...


class CorrelationIdProvider(Protocol):
    """The correlation id of the current request or message, or None outside one."""

    def __call__(self) -> str | None: ...
