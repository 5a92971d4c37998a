"""Property tests over the two untrusted-input parsers: incoming ids and log event keys."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.types import Message, Receive, Scope, Send

from saasfw.observability import CorrelationSettings, ObservabilityMiddleware, Redactor

SAFE = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")


def _run(incoming: bytes) -> tuple[str, bytes]:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        from saasfw.observability import get_correlation_id

        seen.append(get_correlation_id() or "")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    middleware = ObservabilityMiddleware(app, correlation=CorrelationSettings())
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-request-id", incoming)],
    }
    asyncio.run(middleware(scope, receive, send))
    return seen[0], dict(sent[0]["headers"])[b"x-request-id"]


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(alphabet="abcXYZ0189-_.:+/=", min_size=1, max_size=140).map(str.encode),
    )
)
def test_an_incoming_id_is_kept_exactly_when_it_is_safe(incoming: bytes) -> None:
    used, echoed = _run(incoming)
    assert echoed == used.encode("ascii")
    if SAFE.fullmatch(incoming):
        assert used.encode("ascii") == incoming
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", used)
    assert b"\r" not in echoed
    assert b"\n" not in echoed


_keys = st.one_of(
    st.sampled_from(["password", "Access-Token", "user", "db_secret", "x", "AUTHORIZATION"]),
    st.text(max_size=12),
)
_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.text(max_size=8), st.integers(), st.none()),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(_keys, children, max_size=4)
    ),
    max_leaves=12,
)


def _leaks(value: Any, sensitive: Any) -> bool:
    if isinstance(value, dict):
        return any(
            (sensitive(k) and v != "[REDACTED]") or _leaks(v, sensitive) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_leaks(v, sensitive) for v in value)
    return False


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6))
def test_no_value_under_a_sensitive_key_survives(event: dict[str, Any]) -> None:
    words = ("password", "token", "authorization", "secret")

    def sensitive(key: object) -> bool:
        return isinstance(key, str) and any(w in key.lower().replace("-", "_") for w in words)

    redacted = Redactor(words)(None, "info", dict(event))
    assert not _leaks(redacted, sensitive)
    # Keys that are not sensitive keep their values (at the top level, unchanged scalars).
    for key, value in event.items():
        if not sensitive(key) and not isinstance(value, dict | list):
            assert redacted[key] == value
