"""Security response headers for an API, as a pure ASGI middleware.

The defaults suit a JSON API: nothing a response returns should ever be rendered as a
document, framed, or allowed to load anything, so the Content-Security-Policy denies all.
FastAPI's interactive docs need scripts and styles from a CDN, so their paths are exempt
from the CSP (and only from it). Headers the application set itself are never overwritten,
so a route that needs a different policy sets its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saasfw.security._proxies import TrustedProxies

__all__ = ["SecurityHeadersMiddleware", "SecurityHeadersSettings"]

API_CONTENT_SECURITY_POLICY = (
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class SecurityHeadersSettings(BaseModel):
    """The ``headers`` section of the security settings.

    Attributes:
        enabled: master switch.
        content_type_options: send ``X-Content-Type-Options: nosniff``.
        referrer_policy: ``Referrer-Policy`` value, or None to omit.
        frame_options: ``X-Frame-Options`` (legacy browsers; the CSP's
            ``frame-ancestors`` covers current ones), or None to omit.
        content_security_policy: the CSP for API responses, or None to omit.
        csp_exempt_paths: path prefixes served without the CSP (the interactive docs).
        hsts_max_age: ``Strict-Transport-Security`` max-age in seconds, sent only on
            responses to HTTPS requests (directly or via a trusted proxy's
            ``X-Forwarded-Proto``); 0 disables HSTS.
        hsts_include_subdomains: add ``includeSubDomains``.
        hsts_preload: add ``preload`` (only once the domain is submitted to preload lists).
        cross_origin_opener_policy: ``Cross-Origin-Opener-Policy``, or None to omit.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    content_type_options: bool = True
    referrer_policy: str | None = "no-referrer"
    frame_options: Literal["DENY", "SAMEORIGIN"] | None = "DENY"
    content_security_policy: str | None = API_CONTENT_SECURITY_POLICY
    csp_exempt_paths: tuple[str, ...] = ("/docs", "/redoc")
    hsts_max_age: int = Field(default=63_072_000, ge=0)
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    cross_origin_opener_policy: str | None = "same-origin"


def add_missing(headers: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]) -> None:
    """Append the ``extra`` headers the response did not set itself."""
    present = {name.lower() for name, _ in headers}
    headers.extend(h for h in extra if h[0] not in present)


def _header(name: str, value: str) -> tuple[bytes, bytes]:
    if "\r" in value or "\n" in value:
        raise ValueError(f"security header {name} must not contain a line break")
    return name.encode("latin-1"), value.encode("latin-1")


class SecurityHeadersMiddleware:
    """Pure ASGI middleware adding the configured security headers to every HTTP response.

    Args:
        app: the ASGI application.
        settings: which headers and values.
        proxies: trusted proxies, to recognise HTTPS terminated in front of the service.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: SecurityHeadersSettings | None = None,
        proxies: TrustedProxies | None = None,
    ) -> None:
        self.app = app
        self.settings = settings = settings or SecurityHeadersSettings()
        self.proxies = proxies or TrustedProxies()
        common: list[tuple[bytes, bytes]] = []
        if settings.content_type_options:
            common.append(_header("x-content-type-options", "nosniff"))
        if settings.referrer_policy:
            common.append(_header("referrer-policy", settings.referrer_policy))
        if settings.frame_options:
            common.append(_header("x-frame-options", settings.frame_options))
        if settings.cross_origin_opener_policy:
            common.append(
                _header("cross-origin-opener-policy", settings.cross_origin_opener_policy)
            )
        self._common = common
        self._csp = (
            _header("content-security-policy", settings.content_security_policy)
            if settings.content_security_policy
            else None
        )
        self._hsts: tuple[bytes, bytes] | None = None
        if settings.hsts_max_age:
            value = f"max-age={settings.hsts_max_age}"
            if settings.hsts_include_subdomains:
                value += "; includeSubDomains"
            if settings.hsts_preload:
                value += "; preload"
            self._hsts = _header("strict-transport-security", value)
        self._exempt = tuple(settings.csp_exempt_paths)

    def headers_for(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The headers this request's response gets (those it does not set itself)."""
        extra = list(self._common)
        if self._csp is not None and not scope["path"].startswith(self._exempt):
            extra.append(self._csp)
        if self._hsts is not None and self.proxies.scheme(scope) == "https":
            extra.append(self._hsts)
        return extra

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.settings.enabled:
            await self.app(scope, receive, send)
            return
        extra = self.headers_for(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                add_missing(headers, extra)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
