"""Pure ASGI middleware that audits state-changing HTTP requests, and the security listener."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping
from typing import Any

from saasfw.audit._errors import AuditError
from saasfw.audit._event import Actor, Resource, SecurityEventLike
from saasfw.audit._logger import AuditLogger
from saasfw.core import route_template

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_log = logging.getLogger("saasfw.audit")

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SECRET_KEYS = frozenset({"password", "token", "secret", "authorization", "api_key", "cookie"})


def _outcome(status: int) -> str:
    if status in (401, 403):
        return "denied"
    return "success" if status < 400 else "failure"


class AuditMiddleware:
    """Records one ``http.request`` event per state-changing request.

    The event carries the method, the route template (never the raw path, which may hold
    personal data), the status and the duration. The actor comes from the logger's actor
    port, read when the response starts, i.e. after authentication ran; request headers
    such as ``X-User-Id`` are never consulted.

    Args:
        app: the ASGI application.
        logger: the audit logger (its ports provide actor and correlation id).
        methods: the methods to audit (default POST, PUT, PATCH, DELETE).
        event_type: the event type recorded.
    """

    def __init__(
        self,
        app: ASGIApp,
        logger: AuditLogger,
        *,
        methods: Collection[str] = STATE_CHANGING,
        event_type: str = "http.request",
    ) -> None:
        self.app = app
        self.logger = logger
        self.methods = frozenset(m.upper() for m in methods)
        self.event_type = event_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in self.methods:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 500
        logger = self.logger
        seen: dict[str, Any] = {}

        def capture() -> None:
            # Inside the request's context, after authentication dependencies ran.
            if "actor" not in seen:
                actor_port, corr_port = logger.actor_provider, logger.correlation_id_provider
                seen["actor"] = actor_port() if actor_port is not None else None
                seen["corr"] = corr_port() if corr_port is not None else None

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                capture()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            capture()
            # The same full template (mount and router prefixes) as access log and metrics.
            template = route_template(scope, root_path)
            actor = seen["actor"] or Actor("anonymous", kind="anonymous", address=_client(scope))
            try:
                await logger.arecord(
                    self.event_type,
                    action=scope["method"],
                    outcome=_outcome(status),
                    actor=actor,
                    correlation_id=seen["corr"],
                    resource=Resource("route", template),
                    details={
                        "method": scope["method"],
                        "route": template,
                        "status": status,
                        "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                    },
                )
            except AuditError as exc:
                # The response is already sent: never mask the application's own outcome
                # (or exception); make the lost audit event loud instead.
                _log.error(
                    "audit event for %s %s (status %d) not recorded: %s",
                    scope["method"],
                    template,
                    status,
                    exc.detail,
                )


def _client(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


def security_events_listener(
    logger: AuditLogger, *, redact: Collection[str] = SECRET_KEYS
) -> Callable[[SecurityEventLike], None]:
    """A listener for the security package's events port, recording each one.

    The actor is the event's principal (or ``anonymous``); detail keys named in ``redact``
    are replaced by ``"[redacted]"``. The call never waits for disk, even in durable mode,
    and never raises (a failure is logged), because the security package calls listeners
    inline in the request path.
    """
    redacted = frozenset(k.lower() for k in redact)

    def listener(event: SecurityEventLike) -> None:
        details: Mapping[str, Any] = event.details or {}
        clean = {k: "[redacted]" if k.lower() in redacted else v for k, v in details.items()}
        actor = Actor(
            event.principal_id or "anonymous",
            kind="principal" if event.principal_id else "anonymous",
            tenant=event.tenant,
            address=event.address,
        )
        try:
            logger.record(
                event.type, outcome=event.outcome, actor=actor, details=clean, durable=False
            )
        except AuditError as exc:  # never break the caller's login or authorisation path
            _log.error("security event %s not audited: %s", event.type, exc.detail)

    return listener
