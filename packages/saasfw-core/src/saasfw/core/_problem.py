"""The one RFC 9457 problem writer: every error body of every saasfw package comes from here.

One dialect everywhere: ``type`` is ``urn:saasfw:problem:<code>``, ``code`` is a dotted,
lower-case name (``http.not_found``, ``auth.required``, ``ratelimit.exceeded``), and
``instance`` and ``correlation_id`` are on every problem. It speaks raw ASGI, so pure ASGI
middleware (which runs outside any framework) answers in exactly the same shape as a
FastAPI exception handler, and this package needs no Starlette.

The correlation id comes from a provider the application wires once (observability owns
the id; ``saasfw.app`` calls :func:`use_correlation_id`), or is passed explicitly.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Any

from saasfw.core._ports import CorrelationIdProvider

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPE_PREFIX",
    "instance_of",
    "problem_body",
    "problem_bytes",
    "problem_code",
    "send_problem",
    "use_correlation_id",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:saasfw:problem:"

ASGISend = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _no_correlation_id() -> str | None:
    return None


_provider: list[CorrelationIdProvider] = [_no_correlation_id]


def use_correlation_id(provider: CorrelationIdProvider | None) -> None:
    """Wire the correlation-id port every problem reads (None unwires it).

    Process-wide on purpose: the id itself lives in a contextvar per request, and every
    writer of problems in the process must report the same one.
    """
    _provider[0] = provider or _no_correlation_id


def problem_code(status: int) -> str:
    """The generic code of a status: ``http.not_found``, ``http.too_many_requests``."""
    try:
        return "http." + HTTPStatus(status).name.lower()
    except ValueError:
        return "http.error"


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_body(
    status: int,
    *,
    code: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    correlation_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The problem document as a dict (``extra`` adds members such as ``errors``)."""
    code = code or problem_code(status)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title or _title(status),
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = instance
    body["correlation_id"] = correlation_id if correlation_id else _provider[0]()
    if extra:
        for key, value in extra.items():
            body.setdefault(key, value)
    return body


def problem_bytes(status: int, **fields: Any) -> bytes:
    """:func:`problem_body` encoded as compact UTF-8 JSON."""
    return json.dumps(problem_body(status, **fields), separators=(",", ":")).encode()


def instance_of(scope: Mapping[str, Any]) -> str | None:
    """The request's path as the client addressed it (mount prefix included)."""
    path = scope.get("path")
    if not isinstance(path, str):
        return None
    root = scope.get("root_path") or ""
    return path if not root or path.startswith(root) else root + path


async def send_problem(
    scope: Mapping[str, Any],
    send: ASGISend,
    status: int,
    *,
    headers: Iterable[tuple[bytes, bytes]] = (),
    **fields: Any,
) -> None:
    """Answer the request in ``scope`` with a problem, over raw ASGI.

    ``fields`` are :func:`problem_body`'s; ``instance`` defaults to the request path. A
    HEAD request gets the headers without the body, as HTTP requires.
    """
    fields.setdefault("instance", instance_of(scope))
    body = problem_bytes(status, **fields)
    raw_headers = [
        (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    head = scope.get("method") == "HEAD"
    await send({"type": "http.response.body", "body": b"" if head else body})
