"""The HTTP side of rate limiting: a pure ASGI middleware and a FastAPI dependency.

The middleware enforces the global default limits before routing (cheap: no request object,
no dependency resolution). Per-route and per-group limits are dependencies so they sit next
to the route they protect and can key by the principal that an earlier security dependency
verified.
"""

from __future__ import annotations

from typing import Final

from fastapi import HTTPException, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saasfw.core import send_problem
from saasfw.security._errors import ConfigurationError
from saasfw.security._ratelimit import (
    FailureMode,
    KeyFunction,
    KeyKind,
    RateLimitDecision,
    RateLimiter,
    RateLimitPolicy,
)

__all__ = ["RateLimit", "RateLimitMiddleware", "install_rate_limiter"]

_STATE_ATTRIBUTE: Final = "saasfw_rate_limiter"


def install_rate_limiter(app: object, limiter: RateLimiter) -> None:
    """Make ``limiter`` the one :class:`RateLimit` dependencies of ``app`` use."""
    setattr(app.state, _STATE_ATTRIBUTE, limiter)  # type: ignore[attr-defined]


async def send_refusal(scope: Scope, send: Send, decision: RateLimitDecision) -> None:
    """Refuse with saasfw-core's problem body: 429 with ``Retry-After`` and the
    ``RateLimit`` headers, or 503 when the storage is down and the policy fails closed."""
    if decision.storage_failed:
        status, code = 503, "ratelimit.unavailable"
        detail = "The rate limit cannot be checked right now; retry later."
    else:
        status, code = 429, "ratelimit.exceeded"
        detail = f"Rate limit {decision.policy!r} exceeded; retry after {decision.retry_after}s."
    headers = [(b"cache-control", b"no-store"), *decision.headers()]
    await send_problem(scope, send, status, code=code, detail=detail, headers=headers)


class RateLimitMiddleware:
    """Pure ASGI middleware applying one policy (by default the settings' default limits)
    to every HTTP request not in ``settings.exempt_paths``.

    Refusals are saasfw-core problem responses: 429 with ``Retry-After``, ``RateLimit`` and
    ``RateLimit-Policy``, or 503 with ``Retry-After`` when the storage is down (or this
    process too busy to check in time) and the policy fails closed. Allowed responses carry
    the ``RateLimit`` headers when enabled. Also installs the limiter for :class:`RateLimit`
    dependencies.
    """

    def __init__(
        self, app: ASGIApp, limiter: RateLimiter, policy: RateLimitPolicy | None = None
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.policy = policy or limiter.default_policy
        self.exempt = frozenset(limiter.settings.exempt_paths)
        self.send_headers = limiter.settings.headers

    def policy_for(self, scope: Scope) -> RateLimitPolicy | None:
        """The policy counting this HTTP request (None: exempt, or no default limits); also
        installs the limiter in the scope for :class:`RateLimit` dependencies."""
        scope[_STATE_ATTRIBUTE] = self.limiter
        if self.policy is None or scope["path"] in self.exempt:
            return None
        return self.policy

    def allowed_headers(self, decision: RateLimitDecision) -> list[tuple[bytes, bytes]]:
        """The ``RateLimit`` headers an allowed response carries (none unless enabled)."""
        if not self.send_headers or decision.storage_failed:
            return []
        return decision.headers()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = self.policy_for(scope) if scope["type"] == "http" else None
        if policy is None:
            await self.app(scope, receive, send)
            return
        limiter = self.limiter
        figures = self.send_headers
        decision = limiter.check_nowait(policy, scope, figures=figures) or await limiter.check(
            policy, scope, figures=figures
        )
        if not decision.allowed:
            await send_refusal(scope, send, decision)
            return
        extra = self.allowed_headers(decision)
        await self.app(scope, receive, appending(send, extra) if extra else send)


def appending(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` adding ``extra`` to the response's headers."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return send_with_headers


class _Refused(HTTPException):
    """The dependency's refusal; ``code`` names it for problem writers that read one."""

    def __init__(
        self, status: int, detail: str, headers: dict[str, str], decision: RateLimitDecision
    ) -> None:
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.code = "ratelimit.unavailable" if decision.storage_failed else "ratelimit.exceeded"


class RateLimit:
    """FastAPI dependency enforcing a per-route or per-group limit.

    ``dependencies=[Depends(RateLimit("5/minute"))]`` counts each route separately (the
    route template is part of the key); ``RateLimit("100/minute", group="auth")`` on several
    routes (or on an ``APIRouter``) shares one counter between them. Put it after the
    security dependency when keying by ``principal`` or ``api_key``.

    Raises ``HTTPException`` 429 (with ``Retry-After`` and the ``RateLimit`` headers) or 503
    with ``Retry-After`` (storage down or this process too busy to check, failing closed);
    the ``RateLimit`` headers are set on allowed responses when enabled.

    Routes that take or mint credentials (login, token refresh, API-key creation, password
    change) pass ``sensitive=True``: they then fail closed when the storage is down even if
    the global ``on_storage_error`` is ``open``; ``on_storage_error="open"`` opts out.

    Args:
        limits: ``limits`` notation, e.g. ``"5/minute"`` or ``"10/second;500/hour"``.
        group: share counters with every route declaring the same group.
        key: what to count per (see :class:`RateLimitPolicy`).
        on_storage_error: ``open`` or ``closed``; None takes ``closed`` when ``sensitive``,
            else the settings default.
        cost: hits consumed per request.
        sensitive: the route guards credentials (see above).
        limiter: the limiter; by default the one installed by :class:`RateLimitMiddleware`
            or :func:`install_rate_limiter`.
    """

    def __init__(
        self,
        limits: str,
        *,
        group: str | None = None,
        key: KeyKind | KeyFunction = "address",
        on_storage_error: FailureMode | None = None,
        cost: int = 1,
        sensitive: bool = False,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.policy = RateLimitPolicy(
            name=group or "route",
            limits=limits,
            key=key,
            on_storage_error=on_storage_error,
            cost=cost,
            sensitive=sensitive,
        )
        self.per_route = group is None
        self.limiter = limiter
        self._scope_names: dict[int, tuple[object, str]] = {}

    def __repr__(self) -> str:
        return f"RateLimit({self.policy.limits!r}, group={self.policy.name!r})"

    def _limiter(self, request: Request) -> RateLimiter:
        if self.limiter is not None:
            return self.limiter
        limiter = request.scope.get(_STATE_ATTRIBUTE) or getattr(
            request.app.state, _STATE_ATTRIBUTE, None
        )
        if not isinstance(limiter, RateLimiter):
            raise ConfigurationError(
                "RateLimit dependency found no RateLimiter: add RateLimitMiddleware or call"
                " install_rate_limiter(app, limiter), or pass limiter="
            )
        return limiter

    async def __call__(self, request: Request, response: Response) -> None:
        limiter = self._limiter(request)
        scope_name = None
        if self.per_route:
            route = request.scope.get("route")
            cached = self._scope_names.get(id(route))
            if cached is not None and cached[0] is route:
                scope_name = cached[1]
            else:
                path = getattr(route, "path", None)
                # The route's template (``/items/{id}``) and declared methods, never the raw
                # path or the request method: both are client-controlled (a HEAD request
                # must not get a second budget on a GET route).
                methods = ",".join(sorted(getattr(route, "methods", None) or ()))
                scope_name = f"{methods}:{path}" if path else "unrouted"
                if route is not None:  # routes live as long as the app: one entry each
                    self._scope_names[id(route)] = (route, scope_name)
        send_headers = limiter.settings.headers
        decision = limiter.check_nowait(
            self.policy, request.scope, scope_name=scope_name, figures=send_headers
        ) or await limiter.check(self.policy, request.scope, scope_name=scope_name)
        if decision.allowed and (not send_headers or decision.storage_failed):
            return
        headers = {k.decode(): v.decode() for k, v in decision.headers()}
        if not decision.allowed:
            status = 503 if decision.storage_failed else 429
            detail = (
                "The rate limit cannot be checked right now; retry later."
                if decision.storage_failed
                else f"Rate limit exceeded; retry after {decision.retry_after}s."
            )
            raise _Refused(status, detail, headers, decision)
        for name, value in headers.items():
            response.headers.append(name, value)
