"""The exception tree of saasfw.audit: one base class, a few precise subclasses."""

from __future__ import annotations


class AuditError(Exception):
    """Base class of every error raised by saasfw.audit.

    Attributes:
        detail: what was wrong and what to do, never containing a secret.
        where: the setting, file or sink involved, when there is one.
    """

    def __init__(self, detail: str, *, where: str | None = None) -> None:
        self.detail = detail
        self.where = where
        super().__init__(f"{where}: {detail}" if where else detail)


class AuditConfigError(AuditError):
    """The audit settings are unusable (a missing key, a contradictory policy, ...)."""


class AuditDeliveryError(AuditError):
    """An event could not be accepted or delivered (logger closed, queue full, timeout)."""


class AuditClosedError(AuditDeliveryError):
    """The logger is closed or was never started; the event was not recorded."""


class AuditQueueFullError(AuditDeliveryError):
    """A durable record call could not be queued within its timeout."""


class AuditUnavailableError(AuditDeliveryError):
    """A ``fail_closed`` sink cannot store events (full disk, I/O error, store down); the
    event was not recorded, so the caller should not commit what it was about to audit.

    Answer 503 with ``Retry-After: retry_after``; the sink retries by itself and events are
    accepted again as soon as one of its writes succeeds.

    Attributes:
        retry_after: whole seconds (at least 1) until the sink's next write attempt.
        sink: the name of the sink that refused.
    """

    def __init__(self, detail: str, *, retry_after: float, sink: str) -> None:
        super().__init__(detail, where=f"sink {sink}")
        self.retry_after = retry_after
        self.sink = sink


class AuditSinkError(AuditError):
    """A sink failed to write or is unhealthy."""


class AuditCryptoError(AuditError):
    """A field could not be encrypted or decrypted."""


class KeyShreddedError(AuditCryptoError):
    """The data key of the field's subject was erased (crypto-shredded)."""


class AuditIntegrityError(AuditError):
    """A log or checkpoint file is malformed in a way that prevents reading it."""


class MissingExtraError(ImportError, AuditError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, extra: str, module: str) -> None:
        AuditError.__init__(
            self,
            f"{module} is not installed; install it with `pip install saasfw-audit[{extra}]`",
        )
        self.msg = self.detail
