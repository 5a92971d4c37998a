import json
from typing import Any

import pytest

from saasfw.core import (
    PROBLEM_CONTENT_TYPE,
    ProblemDetails,
    problem_body,
    problem_code,
    send_problem,
    use_correlation_id,
)


async def _answer(scope: dict[str, Any], status: int, **fields: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await send_problem(scope, send, status, **fields)
    return sent


@pytest.fixture(autouse=True)
def _unwire() -> Any:
    yield
    use_correlation_id(None)


async def test_one_dialect_with_instance_and_correlation_id() -> None:
    use_correlation_id(lambda: "cid-1")
    scope = {"type": "http", "method": "POST", "path": "/v1/orders", "root_path": ""}
    start, body = await _answer(
        scope, 429, code="ratelimit.exceeded", headers=[(b"retry-after", b"3")]
    )
    assert start["status"] == 429
    headers = dict(start["headers"])
    assert headers[b"content-type"] == PROBLEM_CONTENT_TYPE.encode()
    assert headers[b"retry-after"] == b"3"
    assert int(headers[b"content-length"]) == len(body["body"])
    document = json.loads(body["body"])
    assert document == {
        "type": "urn:saasfw:problem:ratelimit.exceeded",
        "title": "Too Many Requests",
        "status": 429,
        "code": "ratelimit.exceeded",
        "instance": "/v1/orders",
        "correlation_id": "cid-1",
    }
    ProblemDetails.model_validate(document)


async def test_head_gets_headers_without_body_and_mount_prefix_is_kept() -> None:
    scope = {"type": "http", "method": "HEAD", "path": "/items", "root_path": "/api"}
    start, body = await _answer(scope, 404)
    assert body["body"] == b""
    assert int(dict(start["headers"])[b"content-length"]) > 0
    assert problem_body(404, instance="/api/items")["instance"] == "/api/items"


def test_generic_codes_follow_the_status_name() -> None:
    assert problem_code(404) == "http.not_found"
    assert problem_code(405) == "http.method_not_allowed"
    assert problem_code(431) == "http.request_header_fields_too_large"
    assert problem_code(599) == "http.error"
    body = problem_body(503, detail="retry later", correlation_id="given", extra={"status": 1})
    assert body["type"] == "urn:saasfw:problem:http.service_unavailable"
    assert body["correlation_id"] == "given"
    assert body["status"] == 503  # extra members never overwrite the standard ones
    assert body["instance"] is None
