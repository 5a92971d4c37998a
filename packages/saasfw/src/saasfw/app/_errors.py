"""The exception tree of saasfw.app."""

from __future__ import annotations

__all__ = ["AppError", "CircuitOpenError", "UnknownServiceError"]


class AppError(Exception):
    """Base of the errors saasfw.app raises itself (the concern packages raise their own)."""


class UnknownServiceError(AppError, LookupError):
    """A downstream service was asked for by a name that ``clients`` does not configure."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"no downstream service named {name!r} in settings.clients "
            f"(configured: {', '.join(known) or 'none'}); add SAASFW_CLIENTS__{name.upper()}"
            "__BASE_URL or a clients entry in the YAML"
        )
        self.name = name


class CircuitOpenError(AppError):
    """Calls to a downstream service are refused while its circuit breaker is open.

    Attributes:
        service: the downstream service's name.
        retry_after: seconds until the breaker lets a trial call through.
    """

    def __init__(self, service: str, retry_after: float) -> None:
        super().__init__(
            f"calls to {service!r} are suspended after repeated failures; "
            f"retry in {retry_after:.0f}s"
        )
        self.service = service
        self.retry_after = retry_after
