"""The HTTP security layers as one pure ASGI middleware.

Stacked separately, security headers, CORS, request size limits, the global rate limit and
the security context cost five coroutine frames and three ``send`` wrappers per request.
:class:`SecurityMiddleware` does the same work in one frame with one ``send`` wrapper for
the common request (no ``Origin`` header). A request carrying an ``Origin`` goes through the
five layers themselves, built once at start-up in the same order, so CORS (simple and
preflight) behaves exactly as :class:`CorsMiddleware` does. A test drives both forms with
the same requests and compares the answers byte for byte.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saasfw.security._cors import CorsMiddleware, CorsSettings
from saasfw.security._fastapi import SecurityContextMiddleware
from saasfw.security._headers import (
    SecurityHeadersMiddleware,
    SecurityHeadersSettings,
    add_missing,
)
from saasfw.security._limits import (
    BodyTooLarge,
    RequestLimitsMiddleware,
    RequestLimitsSettings,
    problem,
)
from saasfw.security._proxies import TrustedProxies
from saasfw.security._ratelimit import RateLimiter
from saasfw.security._ratelimit_asgi import RateLimitMiddleware, appending, send_refusal

__all__ = ["SecurityMiddleware"]


class SecurityMiddleware:
    """Security headers, CORS, request limits, the global rate limit and the security
    context, in that order (outermost first), as one pure ASGI layer.

    Each part is off when its argument is None (``security_context=False`` for the last).
    The behaviour is that of stacking :class:`SecurityHeadersMiddleware`,
    :class:`CorsMiddleware`, :class:`RequestLimitsMiddleware`, :class:`RateLimitMiddleware`
    and :class:`SecurityContextMiddleware`: refusals (400, 413, 431, 429, 503) carry the
    security headers, allowed responses never have a header they set themselves replaced.

    Args:
        app: the ASGI application.
        headers: security header settings (None, or ``enabled: false``: no headers).
        proxies: trusted proxies, to recognise HTTPS terminated in front (HSTS).
        cors: CORS settings (None: no CORS handling at all).
        limits: request size limits (None: no limits).
        limiter: the rate limiter whose default policy applies to every request not in
            its ``exempt_paths`` (None: no global limit); also installed for
            :class:`RateLimit` dependencies.
        security_context: reset the current principal around each request.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        headers: SecurityHeadersSettings | None = None,
        proxies: TrustedProxies | None = None,
        cors: CorsSettings | None = None,
        limits: RequestLimitsSettings | None = None,
        limiter: RateLimiter | None = None,
        security_context: bool = True,
    ) -> None:
        self.app = app
        # The application with the security context around it, if that is on: what the
        # parts below wrap, in both forms.
        self._inner: ASGIApp = SecurityContextMiddleware(app) if security_context else app
        layered = self._inner
        self._rate: RateLimitMiddleware | None = None
        if limiter is not None:
            layered = self._rate = RateLimitMiddleware(layered, limiter=limiter)
        self._limits: RequestLimitsMiddleware | None = None
        if limits is not None:
            layered = self._limits = RequestLimitsMiddleware(layered, settings=limits)
        if cors is not None:
            layered = CorsMiddleware(layered, settings=cors)
        self._headers: SecurityHeadersMiddleware | None = None
        if headers is not None and headers.enabled:
            layered = self._headers = SecurityHeadersMiddleware(
                layered, settings=headers, proxies=proxies
            )
        # The same parts as separate layers: what a request with an Origin goes through.
        self._layered = layered
        self._cors = cors is not None
        # With any origin allowed, every response varies by Origin, also one to a request
        # without it (CorsMiddleware adds ``Vary: Origin`` then too; with none allowed it
        # lets such requests pass untouched).
        self._vary = cors is not None and bool(cors.allow_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._layered(scope, receive, send)
            return
        if self._cors:
            for name, _ in scope["headers"]:
                if name == b"origin":
                    await self._layered(scope, receive, send)
                    return
        extra = self._headers.headers_for(scope) if self._headers is not None else []
        vary, limits, rate = self._vary, self._limits, self._rate
        if not extra and not vary and limits is None and rate is None:
            await self._inner(scope, receive, send)  # nothing to add or refuse
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if extra or vary:
                    headers = list(message.get("headers", ()))
                    if vary:
                        _add_vary_origin(headers)
                    add_missing(headers, extra)
                    message["headers"] = headers
            await send(message)

        if limits is not None:
            refused = limits.refusal(scope)
            if refused is not None:
                await problem(scope, send_with_headers, *refused)
                return
            receive = limits.limited(receive)
        inner_send: Send = send_with_headers
        policy = rate.policy_for(scope) if rate is not None else None
        if rate is not None and policy is not None:
            limiter = rate.limiter
            figures = rate.send_headers
            decision = limiter.check_nowait(policy, scope, figures=figures) or await limiter.check(
                policy, scope, figures=figures
            )
            if not decision.allowed:
                await send_refusal(scope, send_with_headers, decision)
                return
            limit_headers = rate.allowed_headers(decision)
            if limit_headers:
                inner_send = appending(send_with_headers, limit_headers)
        try:
            await self._inner(scope, receive, inner_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await problem(scope, send_with_headers, 413, "Content Too Large", str(exc.detail))


def _add_vary_origin(headers: list[tuple[bytes, bytes]]) -> None:
    """Add ``Origin`` to the response's ``Vary`` as Starlette's CORS middleware does: the
    values of every ``Vary`` header joined into the first one's place, or a new header."""
    positions = [i for i, (name, _) in enumerate(headers) if name.lower() == b"vary"]
    if not positions:
        headers.append((b"vary", b"Origin"))
        return
    joined = b", ".join([*(headers[i][1] for i in positions), b"Origin"])
    headers[positions[0]] = (b"vary", joined)
    for i in reversed(positions[1:]):
        del headers[i]
