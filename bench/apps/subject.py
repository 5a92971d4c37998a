"""What the instruction-count benchmark needs from each app it measures: one ``Subject``.

A subject is an ASGI app plus the hooks the harness drives from outside the counted
windows: ``mint(permission)`` makes a bearer token carrying that permission (apps without
authentication have none), ``flush()`` pushes out everything the app defers (batched
spans, buffered access lines) so the deferred work lands inside the window that caused
it, and ``counts()`` reads the work done so far (spans exported, metric samples for the
hello route, access lines written).

Every featured app answers ``GET /`` with ``{"hello": "world"}`` given a token with
``hello:read``, 401 without a token, 403 with a token lacking the permission and 429 past
its limit, each with the same security headers (``SECURITY_HEADERS``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

READ = "hello:read"
OTHER = "other:write"
ISSUER = AUDIENCE = "bench"

# The headers saasfw's security layer sets on every answer; each featured app sets the
# same ones, the way its own users would.
SECURITY_HEADERS: dict[str, str] = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
    "content-security-policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
}

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _nothing() -> None:
    return None


def _no_counts() -> dict[str, float]:
    return {}


@dataclass
class Subject:
    name: str
    app: ASGIApp
    featured: bool = False
    mint: Callable[[str], Awaitable[str]] | None = None
    flush: Callable[[], None] = _nothing
    counts: Callable[[], dict[str, float]] = _no_counts
    redis_url: str | None = None
    notes: list[str] = field(default_factory=list)


def count_lines(path: Any) -> float:
    """Lines in a log file (0 when it does not exist yet)."""
    try:
        with open(path, "rb") as handle:
            return float(
                sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 16), b""))
            )
    except FileNotFoundError:
        return 0.0
