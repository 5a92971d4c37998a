"""Pure ASGI probe endpoints: ``{prefix}``, ``{prefix}/live``, ``/ready``, ``/startup``, custom."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from saasfw.core import problem_body, send_problem
from saasfw.k8s._errors import K8sError
from saasfw.k8s._health import (
    READY,
    STARTUP,
    HealthRegistry,
    HealthReport,
    Status,
    group_status,
)
from saasfw.k8s._lifecycle import AvailabilityState, Lifecycle


class HealthProbes:
    """Answers probe requests from a registry and (optionally) a lifecycle.

    - ``live``: the live checks only; the availability state never fails it, so a draining
      or slow-to-start pod is not restarted.
    - ``ready``: the ready checks, and DOWN unless the state is ``ready`` (so it answers 503
      while starting and from the moment a drain begins).
    - ``startup``: the startup checks, and DOWN while the state is ``starting``.
    - ``{prefix}`` (summary): every check and every group, DOWN unless all are UP and ready.
    - any custom group: its checks.

    200 when UP, 503 when DOWN, 404 for an unknown group, 405 for a method other than GET/HEAD.
    Probes run before any correlation-id middleware, so an error answer takes the request's
    id from ``correlation_header`` itself (or makes one) and echoes it, like every other
    problem of the service.
    """

    def __init__(
        self,
        registry: HealthRegistry,
        lifecycle: Lifecycle | None = None,
        *,
        prefix: str = "/health",
        correlation_header: str = "X-Request-ID",
    ) -> None:
        self.registry = registry
        self.lifecycle = lifecycle
        self.prefix = prefix.rstrip("/")
        self._header = correlation_header.lower().encode("latin-1")

    def _correlation(self, scope: Scope) -> tuple[str, tuple[bytes, bytes]]:
        """The request's correlation id (a safe incoming one, else a new one) and its echo."""
        for name, value in scope.get("headers", ()):
            if name == self._header and _SAFE_ID.fullmatch(value):
                return value.decode("ascii"), (self._header, value)
        fresh = os.urandom(16).hex()
        return fresh, (self._header, fresh.encode("ascii"))

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    def _state(self) -> AvailabilityState:
        return AvailabilityState.READY if self.lifecycle is None else self.lifecycle.state

    async def evaluate(self, group: str | None) -> tuple[int, dict[str, Any]]:
        """Status code and JSON body for a group (``None`` = the summary)."""
        state = self._state()
        if group is None:
            report = await self.registry.check_all()
            # Group states come from this one run, so the summary runs each check once.
            by_name = {result.name: result for result in report.checks}
            groups = {}
            for name in sorted(self.registry.groups):
                members = [by_name[n] for n in self.registry.names(name) if n in by_name]
                status = group_status(members)
                summary = HealthReport(group=name, status=status, checks=tuple(members))
                groups[name] = self._gate(summary, state).status.value
            up = report.status is Status.UP and state is AvailabilityState.READY
            body = report.to_dict()
            body["status"] = Status.UP.value if up else Status.DOWN.value
            body["groups"] = groups
        else:
            if group not in self.registry.groups:
                return 404, problem_body(404, detail=f"no health group named {group!r}")
            report = await self._group_report(group, state)
            up = report.status is Status.UP
            body = report.to_dict()
        body["availability"] = state.value
        return (200 if up else 503), body

    async def _group_report(self, group: str, state: AvailabilityState) -> HealthReport:
        return self._gate(await self.registry.check_group(group), state)

    @staticmethod
    def _gate(report: HealthReport, state: AvailabilityState) -> HealthReport:
        group = report.group
        gated = (group == READY and state is not AvailabilityState.READY) or (
            group == STARTUP and state is AvailabilityState.STARTING
        )
        if gated and report.status is Status.UP:
            return HealthReport(group=group, status=Status.DOWN, checks=report.checks)
        return report

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        rest = path[len(self.prefix) :].strip("/")
        method: str = scope["method"]
        if method not in ("GET", "HEAD"):
            cid, echo = self._correlation(scope)
            await send_problem(
                scope,
                send,
                405,
                detail="probes answer GET and HEAD",
                correlation_id=cid,
                headers=[_NO_STORE, (b"allow", b"GET, HEAD"), echo],
            )
            return
        status, body = await self.evaluate(rest or None)
        if status == 404:
            cid, echo = self._correlation(scope)
            await send_problem(
                scope,
                send,
                404,
                detail=body.get("detail"),
                correlation_id=cid,
                headers=[_NO_STORE, echo],
            )
            return
        await _send(send, status, body, head=method == "HEAD")


_NO_STORE = (b"cache-control", b"no-store")
# The ids saasfw.observability accepts from a client: no CR/LF, spaces or quotes.
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")


async def _send(send: Send, status: int, body: dict[str, Any], *, head: bool) -> None:
    """A health report (200 or 503); errors are problems, written by saasfw-core."""
    payload = json.dumps(body, separators=(",", ":")).encode()
    headers = [
        (b"content-type", b"application/json"),
        _NO_STORE,
        (b"content-length", str(len(payload)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else payload})


class HealthProbeMiddleware:
    """Outermost pure ASGI middleware that answers probe paths before the app sees them.

    Probes never reach authentication, rate limiting, audit or metrics middleware placed
    inside it, so add it last (``app.add_middleware(HealthProbeMiddleware, ...)``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        registry: HealthRegistry,
        lifecycle: Lifecycle | None = None,
        prefix: str = "/health",
        correlation_header: str = "X-Request-ID",
    ) -> None:
        self.app = app
        self.probes = HealthProbes(
            registry, lifecycle, prefix=prefix, correlation_header=correlation_header
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.probes.matches(scope["path"]):
            await self.probes(scope, receive, send)
            return
        await self.app(scope, receive, send)


def health_app(
    registry: HealthRegistry, lifecycle: Lifecycle | None = None, *, prefix: str = "/health"
) -> ASGIApp:
    """A standalone ASGI app serving only the probes (e.g. on a management port); 404 elsewhere."""
    probes = HealthProbes(registry, lifecycle, prefix=prefix)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            raise K8sError(f"health_app serves HTTP only, not {scope['type']!r}")
        if probes.matches(scope["path"]):
            await probes(scope, receive, send)
            return
        await send_problem(
            scope, send, 404, detail="only health probes are served here", headers=[_NO_STORE]
        )

    return app
