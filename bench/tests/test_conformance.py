"""The apps the instruction benchmark compares do the same work, and the counter counts.

Each app runs in its own process (``cg_worker.py conform``), configured as in the smoke
run but with a rate limit of 10 per minute, and is sent the same requests: a valid token
four times, no token, a token without the permission, then the valid token until the
limit refuses. The fleet shape talks to a private redis-server (or
``SAASFW_TEST_REDIS_URL``) and exports its spans over OTLP/HTTP to a local receiver.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import bench_instructions
import conformance
import pytest
from _callgrind import run

FEATURED = ["litestar", "popular", "saasfw-single", "saasfw-fleet"]


def _redis_available() -> bool:
    return shutil.which("redis-server") is not None or bool(os.environ.get("SAASFW_TEST_REDIS_URL"))


@pytest.fixture(scope="module")
def probes() -> dict[str, object]:
    apps = ["starlette", "fastapi", *FEATURED]
    if not _redis_available():
        if os.environ.get("SAASFW_REQUIRE_SERVICES"):
            pytest.fail("the fleet shape needs redis-server or SAASFW_TEST_REDIS_URL")
        apps.remove("saasfw-fleet")
    return bench_instructions.conformance(apps)


def test_every_app_answers_alike_and_does_the_work(probes: dict[str, object]) -> None:
    assert conformance.problems(probes) == []  # type: ignore[arg-type]


def test_featured_apps_answer_the_same_statuses(probes: dict[str, dict[str, object]]) -> None:
    seen = {
        app: {case: answer["status"] for case, answer in probes[app]["answers"].items()}  # type: ignore[attr-defined]
        for app in FEATURED
        if app in probes
    }
    assert len(seen) >= 3
    assert all(statuses == conformance.EXPECTED for statuses in seen.values()), seen


def test_a_refusal_without_work_is_reported() -> None:
    """The checker itself fails an app that skips a span or answers the wrong status."""
    answer = {"status": 200, "security_headers": dict(conformance.SECURITY_HEADERS), "body": ""}
    bad = {
        "app": "x",
        "featured": True,
        "answers": {"with_token": answer, "without_token": {**answer, "status": 403}},
        "allowed": {"requests": 4, "work": {"spans": 3.0, "metric_samples": 4.0, "log_lines": 4.0}},
        "refused": {"requests": 2, "work": {"spans": 2.0, "metric_samples": 1.0}},
        "until_limit": [200],
    }
    found = conformance.problems({"x": bad})
    assert any("without_token answered 403" in p for p in found)
    assert any("no past_limit" in p for p in found)
    assert any("3.0 spans" in p for p in found)
    assert any("1.0 metric_samples" in p for p in found)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_callgrind_counts_the_driver_per_request(tmp_path: Path) -> None:
    """Tiny windows of the null app: labelled dumps arrive and the difference is positive."""
    got = run("null", tmp_path, n1=2, n2=6, warmup=2, modes="reuse", env={})
    figure = bench_instructions.per_request(got, "reuse")
    assert got.windows["window reuse n2 6"] > got.windows["window reuse n1 2"] > 0
    # The driver alone: thousands of instructions per request, not millions.
    assert 1_000 < figure["per_request"] < 1_000_000
