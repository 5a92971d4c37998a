"""Prometheus metrics of the rate limiter, read from its counters at scrape time.

saasfw.security counts and offers ``RateLimiter.metrics()`` without depending on
prometheus-client; this collector turns the snapshot into metric families on the service's
registry, so nothing is added to the request path.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from saasfw.security import RateLimiter

__all__ = ["RateLimitCollector", "register_rate_limit_metrics"]


class RateLimitCollector:
    """``saasfw_ratelimit_*`` metric families of one limiter (see the security README)."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    def collect(self) -> Iterable[Metric]:
        snapshot = self.limiter.metrics()
        yield GaugeMetricFamily(
            "saasfw_ratelimit_degraded",
            "1 while the rate-limit storage is treated as down (consecutive storage errors).",
            value=1 if snapshot.degraded else 0,
        )
        yield CounterMetricFamily(
            "saasfw_ratelimit_storage_errors",
            "Rate-limit storage errors (refused or reset connections, unanswered commands).",
            value=snapshot.storage_errors,
        )
        yield CounterMetricFamily(
            "saasfw_ratelimit_contention",
            "Rate-limit checks delayed past a bound by this process being busy, not by the"
            " storage (no pooled connection free, a starved event loop).",
            value=snapshot.contention,
        )
        yield CounterMetricFamily(
            "saasfw_ratelimit_evictions",
            "Live windows the in-process rate-limit storage dropped because it was full.",
            value=snapshot.evictions,
        )
        decisions = CounterMetricFamily(
            "saasfw_ratelimit_decisions",
            "Rate-limit decisions by policy and outcome (allowed, refused, failed_open,"
            " failed_closed).",
            labels=("policy", "outcome"),
        )
        for policy, outcomes in sorted(snapshot.decisions.items()):
            for outcome, count in outcomes.items():
                decisions.add_metric((policy, outcome), count)
        yield decisions


# One collector per registry: two apps built in one process (tests, the global registry)
# must not register the same names twice; the latest app's limiter is the one reported.
_COLLECTORS: weakref.WeakKeyDictionary[CollectorRegistry, RateLimitCollector] = (
    weakref.WeakKeyDictionary()
)


def register_rate_limit_metrics(registry: CollectorRegistry, limiter: RateLimiter) -> None:
    """Report ``limiter``'s counters on ``registry`` (idempotent per registry)."""
    collector = _COLLECTORS.get(registry)
    if collector is None:
        collector = _COLLECTORS[registry] = RateLimitCollector(limiter)
        registry.register(collector)
    else:
        collector.limiter = limiter
