"""The package's exceptions: one base carrying structured attributes, a small tree below it."""

from __future__ import annotations

__all__ = ["EventRejected", "MessagingError", "MissingExtraError", "SignatureError"]


class MessagingError(Exception):
    """Base of every saasfw.messaging error."""


class SignatureError(MessagingError):
    """An event's signature is missing, names an unknown key, or does not match.

    ``reason`` is a short machine-readable word (``missing``, ``unknown-key``, ``mismatch``,
    ``no-signing-key``) that dead-letter records carry; no key material is ever included.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class EventRejected(MessagingError):
    """An incoming message can never be processed (malformed, unverifiable, no handler).

    The consumer dead-letters it at once with ``reason`` instead of retrying.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class MissingExtraError(ImportError):
    """A broker integration, metrics or tracing was used without its extra installed."""

    def __init__(self, extra: str, module: str, *, purpose: str = "this broker") -> None:
        super().__init__(
            f"saasfw.messaging needs {module} for {purpose}: "
            f"pip install 'saasfw-messaging[{extra}]'"
        )
        self.extra = extra
