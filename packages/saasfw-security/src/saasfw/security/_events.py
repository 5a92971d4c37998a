"""The security-events port: other packages subscribe without importing this one.

Listeners are plain callables ``(SecurityEvent) -> None`` so saasfw.audit (or anything
else) can be wired by the umbrella with one ``subscribe`` call. A failing listener never
breaks the request that produced the event: the error is counted and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = ["SecurityEvent", "SecurityEventListener", "SecurityEventType", "SecurityEvents"]

_log = logging.getLogger("saasfw.security.events")

Outcome = Literal["success", "failure", "denied"]


class SecurityEventType:
    """The dotted event types this package publishes (plain strings, open for extension)."""

    AUTH_SUCCEEDED = "auth.authenticate.succeeded"
    AUTH_FAILED = "auth.authenticate.failed"
    LOGIN_SUCCEEDED = "auth.login.succeeded"
    LOGIN_FAILED = "auth.login.failed"
    ACCESS_DENIED = "auth.access.denied"
    TOKEN_REUSE_DETECTED = "auth.token.reuse_detected"  # noqa: S105  # nosec B105
    TOKEN_REVOKED = "auth.token.revoked"  # noqa: S105  # nosec B105
    LOGOUT_EVERYWHERE = "auth.logout.everywhere"
    KEY_CREATED = "auth.api_key.created"
    KEY_REVOKED = "auth.api_key.revoked"
    PASSWORD_CHANGED = "auth.password.changed"  # noqa: S105  # nosec B105
    SESSION_STARTED = "auth.session.started"
    SESSION_ENDED = "auth.session.ended"


def _empty_details() -> Mapping[str, object]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """One security-relevant fact. ``details`` never holds a secret (no token, no key).

    Attributes:
        type: dotted type, e.g. ``auth.login.failed`` (see :class:`SecurityEventType`).
        outcome: ``success``, ``failure`` or ``denied``.
        principal_id: the verified principal, or the claimed subject for failures.
        tenant: tenant of the principal when known.
        address: client address as resolved by the server (never a raw forwarded header).
        details: extra non-secret facts (reason code, permission, key id, ...).
        timestamp: seconds since the epoch.
    """

    type: str
    outcome: Outcome
    principal_id: str | None = None
    tenant: str | None = None
    address: str | None = None
    details: Mapping[str, object] = field(default_factory=_empty_details)
    timestamp: float = field(default_factory=time.time)


SecurityEventListener = Callable[[SecurityEvent], None]


class SecurityEvents:
    """A synchronous fan-out of :class:`SecurityEvent` to subscribed listeners.

    Listeners run inline, so keep them cheap (enqueue, do not do I/O). Exceptions raised by
    a listener are swallowed, counted in :attr:`listener_errors` and logged without the
    event details.
    """

    def __init__(self) -> None:
        self._listeners: tuple[SecurityEventListener, ...] = ()
        self._lock = threading.Lock()
        self._listener_errors = 0
        self._published = 0

    def subscribe(self, listener: SecurityEventListener) -> Callable[[], None]:
        """Add a listener; return a callable that removes it again."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not listener)

        return unsubscribe

    def publish(self, event: SecurityEvent) -> None:
        """Deliver ``event`` to every listener; never raises."""
        self._published += 1
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                with self._lock:
                    self._listener_errors += 1
                _log.exception("security event listener failed (event type %s)", event.type)

    @property
    def has_listeners(self) -> bool:
        """True when at least one listener is subscribed (lets hot paths skip building events)."""
        return bool(self._listeners)

    @property
    def listener_errors(self) -> int:
        """How many listener calls raised since creation."""
        return self._listener_errors

    @property
    def published(self) -> int:
        """How many events were published since creation."""
        return self._published
