"""What every featured app must answer alike, checked on the probe results of ``cg_worker.py
conform`` (used by ``tests/test_conformance.py`` and by ``bench_instructions.py --smoke``).

For the same requests, every app with authentication gives the same status codes (200
with a token carrying ``hello:read``, 401 without a token, 403 with a token lacking the
permission, 429 past its rate limit) with the same security headers on every answer,
exports one span and one metric sample for every request, allowed or refused, and writes
one access line for every allowed request. Bare apps must answer 200.
"""

from __future__ import annotations

from typing import Any

from apps.subject import SECURITY_HEADERS

EXPECTED = {"with_token": 200, "without_token": 401, "wrong_permission": 403, "past_limit": 429}


def problems(found: dict[str, Any]) -> list[str]:
    """Every way the probe results break the rules above (empty: all conform)."""
    out: list[str] = []
    for app, result in found.items():
        answers = result["answers"]
        cases = EXPECTED if result["featured"] else {"with_token": 200}
        for case, status in cases.items():
            got = answers.get(case)
            if got is None:
                out.append(
                    f"{app}: no {case} answer (statuses until the limit: {result['until_limit']})"
                )
                continue
            if got["status"] != status:
                out.append(f"{app}: {case} answered {got['status']}, not {status}")
            if result["featured"] and got["security_headers"] != SECURITY_HEADERS:
                out.append(f"{app}: {case} security headers {got['security_headers']}")
        if not result["featured"]:
            continue
        allowed, refused = result["allowed"], result["refused"]
        for key in ("spans", "metric_samples", "log_lines"):
            if allowed["work"].get(key) != allowed["requests"]:
                out.append(
                    f"{app}: {allowed['requests']} allowed requests gave "
                    f"{allowed['work'].get(key)} {key}"
                )
        for key in ("spans", "metric_samples"):
            if refused["work"].get(key) != refused["requests"]:
                out.append(
                    f"{app}: {refused['requests']} refused requests gave "
                    f"{refused['work'].get(key)} {key}"
                )
    return out
