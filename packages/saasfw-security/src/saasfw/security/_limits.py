"""Request size limits (413 for bodies, 431 for headers) as a pure ASGI middleware.

A declared ``Content-Length`` over the limit is refused before the application runs. A body
without one (chunked) is counted as it streams; when it passes the limit the application's
next ``receive`` raises an HTTP 413 exception, which the application's own exception
handling renders (FastAPI's handlers, or problem+json in the umbrella), and which this
middleware renders itself if it reaches it before a response has started.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from saasfw.core import send_problem

__all__ = ["RequestLimitsMiddleware", "RequestLimitsSettings"]


class RequestLimitsSettings(BaseModel):
    """The ``request_limits`` section of the security settings.

    Attributes:
        max_body_bytes: largest request body accepted (413 beyond).
        max_header_bytes: largest total of header names and values (431 beyond).
        max_header_count: most header lines accepted (431 beyond).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_body_bytes: int = Field(default=1_048_576, ge=0)
    max_header_bytes: int = Field(default=16_384, ge=256)
    max_header_count: int = Field(default=100, ge=8)


class BodyTooLarge(HTTPException):
    """A streamed request body passed the limit (an HTTP 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body is larger than the limit of {limit} bytes.")


_CODES = {
    400: "request.invalid_content_length",
    413: "request.body_too_large",
    431: "request.headers_too_large",
}


async def problem(scope: Scope, send: Send, status: int, title: str, detail: str) -> None:
    """Refuse with saasfw-core's problem body and close the connection."""
    await send_problem(
        scope,
        send,
        status,
        code=_CODES.get(status),
        title=title,
        detail=detail,
        headers=[(b"connection", b"close")],
    )


class RequestLimitsMiddleware:
    """Refuse oversized request bodies (413) and header sections (431)."""

    def __init__(self, app: ASGIApp, settings: RequestLimitsSettings | None = None) -> None:
        self.app = app
        self.settings = settings or RequestLimitsSettings()

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """``(status, title, detail)`` when the request must be refused before the app runs
        (431 for the header section, 400 or 413 for a declared ``Content-Length``)."""
        settings = self.settings
        headers = scope.get("headers", ())
        total = 0
        declared: bytes | None = None
        for name, value in headers:
            total += len(name) + len(value)
            if name == b"content-length":
                declared = value
        if len(headers) > settings.max_header_count or total > settings.max_header_bytes:
            return (
                431,
                "Request Header Fields Too Large",
                f"Request headers exceed {settings.max_header_count} fields or"
                f" {settings.max_header_bytes} bytes.",
            )
        if declared is not None:
            if not declared.isdigit():
                return 400, "Bad Request", "Content-Length is not a number."
            if int(declared) > settings.max_body_bytes:
                return (
                    413,
                    "Content Too Large",
                    f"Request body is larger than the limit of {settings.max_body_bytes} bytes.",
                )
        return None

    def limited(self, receive: Receive) -> Receive:
        """``receive`` counting the body, raising 413 once it passes the limit."""
        limit = self.settings.max_body_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return limited_receive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is not None:
            await problem(scope, send, *refused)
            return
        response_started = False

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, self.limited(receive), tracking_send)
        except BodyTooLarge as exc:
            if response_started:
                raise
            await problem(scope, send, 413, "Content Too Large", str(exc.detail))
