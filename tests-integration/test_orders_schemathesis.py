"""Property-based API testing of the orders example with schemathesis, over real HTTP.

Every operation of the example's OpenAPI schema is called with generated data, valid and
invalid, as an admin (as an auditor for the audit search): no response may be a 5xx,
and every response must match the schema (documented status code, content type, body).

The schemathesis pytest plugin's lazy loader does not run on pytest 9 here (it reads a
removed private attribute), so the operations' Hypothesis strategies are driven directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

if TYPE_CHECKING:
    from conftest import OrdersService

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 15


def _token(base_url: str, user: str = "carol") -> str:
    response = httpx.post(
        f"{base_url}/auth/login",
        json={"username": user, "password": f"{user}-demo-password"},
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def test_no_server_error_and_no_schema_violation(orders: OrdersService) -> None:
    schema = schemathesis.openapi.from_url(f"{orders.base_url}/openapi.json")
    admin = {"Authorization": f"Bearer {_token(orders.base_url)}"}
    auditor = {"Authorization": f"Bearer {_token(orders.base_url, 'erin')}"}
    tested: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def call(case: Any) -> None:
                headers = auditor if case.path.startswith("/audit/") else admin
                if case.path == "/auth/logout":
                    # Logging out revokes the token: give each logout its own.
                    headers = {"Authorization": f"Bearer {_token(orders.base_url)}"}
                case.call_and_validate(base_url=orders.base_url, headers=headers, checks=CHECKS)

            call()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) >= 8, tested
