"""The rate limiter's counters and the snapshot it hands to a metrics exporter.

saasfw-security has no Prometheus dependency: the limiter only counts, and
:meth:`RateLimiter.metrics` returns a :class:`RateLimitMetrics` snapshot that an exporter
(the umbrella's Prometheus collector, or any other) reads at scrape time. Counting is a list
item increment per decision, so it costs the request path next to nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["OUTCOMES", "DecisionCounts", "RateLimitMetrics", "new_counts"]

OUTCOMES: Final = ("allowed", "refused", "failed_open", "failed_closed")
"""Decision outcomes, in the order of a :data:`DecisionCounts` list: within the limit, over
it (429), not counted but let through (storage failure or local contention under a fail-open
policy), not counted and refused (503)."""

ALLOWED: Final = 0
REFUSED: Final = 1
FAILED_OPEN: Final = 2
FAILED_CLOSED: Final = 3

DecisionCounts = list[int]
"""One policy name's decisions, indexed like :data:`OUTCOMES`; shared by every compiled copy
of policies with that name, so counts never go back when a policy is recompiled."""


def new_counts() -> DecisionCounts:
    """A zeroed :data:`DecisionCounts`."""
    return [0] * len(OUTCOMES)


@dataclass(frozen=True, slots=True)
class RateLimitMetrics:
    """A snapshot of one limiter's counters (all counts since the limiter was created).

    Attributes:
        degraded: the storage is treated as down (several consecutive storage errors and no
            success since); checks skip it until ``retry_storage_after`` has passed.
        storage_errors: errors that count against the storage (refused or reset
            connections, timeouts with no other check succeeding meanwhile).
        contention: times a check could not reach the storage in time because this
            process was busy (no pooled connection free in ``pool_timeout``, a timeout
            while the storage answered: a starved event loop; such a timeout is retried
            once and counts here either way); never a storage error. A rising count asks
            for more workers or CPU, not a Redis fix.
        evictions: live windows the bounded memory storage dropped because it was full.
        decisions: policy name -> outcome (see :data:`OUTCOMES`) -> count.
    """

    degraded: bool
    storage_errors: int
    contention: int
    evictions: int
    decisions: Mapping[str, Mapping[str, int]]
