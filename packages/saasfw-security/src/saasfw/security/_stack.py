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
from saasfw.security._headers import SecurityHeadersMiddleware, SecurityHeadersSettings
from saasfw.security._limits import (
    BodyTooLarge,
    RequestLimitsMiddleware,
    RequestLimitsSettings,
    problem,
)
from saasfw.security._principal import reset_current_principal, set_current_principal
from saasfw.security._proxies import TrustedProxies
from saasfw.security._ratelimit import RateLimiter
from saasfw.security._ratelimit_asgi import RateLimitMiddleware, refusal_response

__all__ = ["SecurityMiddleware"]

_RATE_LIMITER_KEY = "saasfw_rate_limiter"


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
        layered = app
        if security_context:
            layered = SecurityContextMiddleware(layered)
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
        self._context = security_context

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
        limits = self._limits
        if not extra and not self._vary and limits is None and self._rate is None:
            # Nothing to add or refuse: only the security context, if that.
            if not self._context:
                await self.app(scope, receive, send)
                return
            reset_to = set_current_principal(None)
            try:
                await self.app(scope, receive, send)
            finally:
                reset_current_principal(reset_to)
            return
        started = False

        vary = self._vary

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if extra or vary:
                    headers = list(message.get("headers", ()))
                    if vary:
                        _add_vary_origin(headers)
                    present = {name.lower() for name, _ in headers}
                    headers.extend(h for h in extra if h[0] not in present)
                    message["headers"] = headers
            await send(message)

        if limits is not None:
            refused = limits.refusal(scope)
            if refused is not None:
                await problem(send_with_headers, *refused)
                return
            # A declared length was checked above and the server stops the body there; a
            # body without one (chunked) is counted as it streams.
            for name, _ in scope["headers"]:
                if name == b"content-length":
                    break
            else:
                receive = limits.limited(receive)

        inner_send: Send = send_with_headers
        rate = self._rate
        if rate is not None:
            scope[_RATE_LIMITER_KEY] = rate.limiter
            policy = rate.policy
            if policy is not None and scope["path"] not in rate.exempt:
                limiter = rate.limiter
                decision = limiter.check_nowait(policy, scope, figures=rate.send_headers)
                if decision is None:
                    decision = await limiter.check(policy, scope)
                if not decision.allowed:
                    status, body, headers = refusal_response(decision)
                    await send_with_headers(
                        {"type": "http.response.start", "status": status, "headers": headers}
                    )
                    await send_with_headers({"type": "http.response.body", "body": body})
                    return
                if rate.send_headers and not decision.storage_failed:
                    limit_headers = decision.headers()

                    async def send_with_limit_headers(message: Message) -> None:
                        if message["type"] == "http.response.start":
                            message["headers"] = [*message.get("headers", ()), *limit_headers]
                        await send_with_headers(message)

                    inner_send = send_with_limit_headers

        token = set_current_principal(None) if self._context else None
        try:
            await self.app(scope, receive, inner_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await problem(send_with_headers, 413, "Content Too Large", str(exc.detail))
        finally:
            if token is not None:
                reset_current_principal(token)


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
