"""CORS with safe defaults, on Starlette's own (pure ASGI) CORS middleware.

The dangerous combinations are refused when the settings load instead of being served:
any origin together with credentials (Starlette would then reflect every origin, letting
any site make authenticated calls), the ``null`` origin (sent by sandboxed frames and
``file:`` pages, so allowing it allows anyone), and origins that are not a bare
``scheme://host[:port]``. The default allows no cross-origin access at all.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["CorsMiddleware", "CorsSettings"]

_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class CorsSettings(BaseModel):
    """The ``cors`` section of the security settings.

    Attributes:
        allow_origins: exact origins (``https://app.example.com``); ``*`` only without
            credentials. Empty (the default) allows no cross-origin request.
        allow_methods: methods a cross-origin request may use.
        allow_headers: request headers a cross-origin request may send.
        expose_headers: response headers browser scripts may read.
        allow_credentials: allow cookies and ``Authorization`` on cross-origin requests.
        max_age: seconds a browser may cache a preflight answer.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ("GET", "POST", "PUT", "PATCH", "DELETE")
    allow_headers: tuple[str, ...] = ("authorization", "content-type", "x-api-key")
    expose_headers: tuple[str, ...] = ("ratelimit", "ratelimit-policy", "retry-after")
    allow_credentials: bool = False
    max_age: int = Field(default=600, ge=0, le=86_400)

    @field_validator("allow_origins")
    @classmethod
    def _exact_origins(cls, origins: tuple[str, ...]) -> tuple[str, ...]:
        for origin in origins:
            if origin == "*":
                continue
            if origin.lower() == "null":
                raise ValueError(
                    "CORS origin 'null' is sent by sandboxed frames and file: pages;"
                    " allowing it allows any site"
                )
            parts = urlsplit(origin)
            if (
                parts.scheme not in {"http", "https"}
                or not parts.hostname
                or "*" in origin
                or parts.path not in {"", "/"}
                or parts.query
                or parts.fragment
                or parts.username is not None
            ):
                raise ValueError(
                    f"CORS origin {origin!r} must be scheme://host[:port], e.g."
                    " 'https://app.example.com' (no path, no wildcard)"
                )
        return tuple(o.rstrip("/") for o in origins)

    @field_validator("allow_methods")
    @classmethod
    def _known_methods(cls, methods: tuple[str, ...]) -> tuple[str, ...]:
        upper = tuple(m.upper() for m in methods)
        unknown = sorted(set(upper) - _METHODS)
        if unknown:
            raise ValueError(f"CORS methods {unknown} are not allowed; use {sorted(_METHODS)}")
        return upper

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsSettings:
        if self.allow_credentials and ("*" in self.allow_origins or "*" in self.allow_headers):
            raise ValueError(
                "CORS allow_credentials cannot be combined with '*' origins or headers: list"
                " the exact origins and headers that may send credentials"
            )
        return self


class CorsMiddleware(CORSMiddleware):
    """Starlette's CORS middleware configured from validated :class:`CorsSettings`.

    With no origin allowed (the default), a request without an ``Origin`` header passes
    straight through: no response can differ by origin, so there is nothing to add, not
    even ``Vary: Origin``, and Starlette's header parsing and ``send`` wrapper (several
    microseconds per request) are skipped. Requests carrying an ``Origin``, simple or
    preflight, get Starlette's handling unchanged.
    """

    def __init__(self, app: ASGIApp, settings: CorsSettings | None = None) -> None:
        settings = settings or CorsSettings()
        self.settings = settings
        super().__init__(
            app,
            allow_origins=settings.allow_origins,
            allow_methods=settings.allow_methods,
            allow_headers=settings.allow_headers,
            allow_credentials=settings.allow_credentials,
            expose_headers=settings.expose_headers,
            max_age=settings.max_age,
        )
        self._nothing_allowed = not settings.allow_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._nothing_allowed and scope["type"] == "http":
            for name, _ in scope["headers"]:
                if name == b"origin":
                    break
            else:
                await self.app(scope, receive, send)
                return
        await super().__call__(scope, receive, send)
