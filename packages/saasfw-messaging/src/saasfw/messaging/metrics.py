"""saasfw.messaging.metrics: Prometheus metrics of consuming, relaying, the outbox and jobs.

Needs ``prometheus-client`` (the ``[metrics]`` extra of the umbrella's wiring). Every
metric is registered on the registry passed in, never on the global one, so two services
in one process (or tests) do not collide. Pass the :class:`MessagingMetrics` to the
consumer (``EventConsumer(observers=[metrics])``) and to the relay's delivery
(``observed_delivery(delivery, metrics)``); run :meth:`MessagingMetrics.watch_outbox` in
the lifespan for the outbox gauges; :func:`register_job_metrics` exposes a scheduler's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - exercised by the isolation check
    from saasfw.messaging._errors import MissingExtraError

    raise MissingExtraError("metrics", "prometheus-client", purpose="its metrics") from exc

from sqlalchemy.ext.asyncio import AsyncEngine

from saasfw.core.outbox import OutboxMessage, OutboxStats, OutboxTables, outbox_stats
from saasfw.messaging._consumer import Ack, DeadLetter, Outcome, Retry
from saasfw.messaging._envelope import CloudEvent
from saasfw.messaging._observe import Observer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from saasfw.core.jobs import JobStats


class SchedulerStats(Protocol):
    """What the job metrics read: a :class:`~saasfw.core.jobs.JobScheduler`, or a view that
    sums several (two apps in one process sharing one registry)."""

    @property
    def stats(self) -> Mapping[str, JobStats]: ...


__all__ = ["MessagingMetrics", "SchedulerStats", "register_job_metrics"]

logger = logging.getLogger("saasfw.messaging")

_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


def _age(event: CloudEvent) -> float | None:
    try:
        created = datetime.fromisoformat(event.time.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, time.time() - created.timestamp())


class MessagingMetrics(Observer):
    """Counters per event type, consumer lag, relay deliveries, outbox depth and age."""

    def __init__(self, registry: CollectorRegistry, *, prefix: str = "saasfw_messaging") -> None:
        def counter(name: str, doc: str, labels: list[str]) -> Counter:
            return Counter(f"{prefix}_{name}", doc, labels, registry=registry)

        self.consumed_total = counter(
            "consumed", "Events handled (outcome processed, or duplicate)", ["type", "outcome"]
        )
        self.failed_total = counter(
            "failed", "Deliveries whose handling failed (retried or dead-lettered)", ["type"]
        )
        self.redelivered_total = counter(
            "redelivered", "Deliveries after the first of an event", ["type"]
        )
        self.dead_lettered_total = counter(
            "dead_lettered", "Events dead-lettered, by reason", ["type", "reason"]
        )
        self.published_total = counter(
            "published", "Relay deliveries to the broker (ok, or failed)", ["type", "outcome"]
        )
        self.lag_seconds = Histogram(
            f"{prefix}_consume_lag_seconds",
            "From the event's time to its successful handling",
            ["type"],
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.outbox_depth = Gauge(
            f"{prefix}_outbox_depth", "Events waiting in the outbox", registry=registry
        )
        self.outbox_oldest_age_seconds = Gauge(
            f"{prefix}_outbox_oldest_age_seconds",
            "Age of the oldest event waiting in the outbox (0 when empty)",
            registry=registry,
        )

    def consumed(
        self, event_type: str, outcome: Outcome, attempt: int, event: CloudEvent | None
    ) -> None:
        if attempt > 1:
            self.redelivered_total.labels(event_type).inc()
        if isinstance(outcome, Ack):
            label = "duplicate" if outcome.duplicate else "processed"
            self.consumed_total.labels(event_type, label).inc()
            age = _age(event) if event is not None and not outcome.duplicate else None
            if age is not None:
                self.lag_seconds.labels(event_type).observe(age)
        elif isinstance(outcome, Retry):
            self.failed_total.labels(event_type).inc()
        elif isinstance(outcome, DeadLetter):
            if outcome.reason == "handler-failed":
                self.failed_total.labels(event_type).inc()
            self.dead_lettered_total.labels(event_type, outcome.reason).inc()

    def relayed(self, message: OutboxMessage, error: BaseException | None) -> None:
        self.published_total.labels(message.type, "failed" if error else "ok").inc()

    def set_outbox(self, stats: OutboxStats) -> None:
        """Set the outbox gauges from ``outbox_stats``."""
        self.outbox_depth.set(stats.depth)
        self.outbox_oldest_age_seconds.set(stats.oldest_age or 0.0)

    async def sample_outbox(self, tables: OutboxTables, engine: AsyncEngine) -> OutboxStats:
        """Read the outbox's depth and oldest age now and set the gauges."""
        stats = await outbox_stats(tables, engine)
        self.set_outbox(stats)
        return stats

    @asynccontextmanager
    async def watch_outbox(
        self, tables: OutboxTables, engine: AsyncEngine, *, every: float = 10.0
    ) -> AsyncIterator[None]:
        """Sample the outbox every ``every`` seconds while the block runs (the lifespan)."""

        async def loop() -> None:
            while True:
                try:
                    await self.sample_outbox(tables, engine)
                except Exception as exc:  # the database may be down: keep the last values
                    logger.warning("outbox metrics could not be sampled: %s", type(exc).__name__)
                await asyncio.sleep(every)

        task = asyncio.create_task(loop(), name="saasfw-messaging-outbox-metrics")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _JobCollector(Collector):
    def __init__(self, scheduler: SchedulerStats, prefix: str) -> None:
        self._scheduler = scheduler
        self._prefix = prefix

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        runs = CounterMetricFamily(
            f"{self._prefix}_runs", "Job runs made by this replica", labels=["job", "outcome"]
        )
        skipped = CounterMetricFamily(
            f"{self._prefix}_skipped", "Periods another replica ran", labels=["job"]
        )
        last = GaugeMetricFamily(
            f"{self._prefix}_last_success_timestamp_seconds",
            "When this replica last ran the job successfully",
            labels=["job"],
        )
        for name, stats in self._scheduler.stats.items():
            runs.add_metric([name, "succeeded"], stats.runs - stats.failures)
            runs.add_metric([name, "failed"], stats.failures)
            skipped.add_metric([name], stats.skipped)
            if stats.last_success is not None:
                last.add_metric([name], stats.last_success)
        yield runs
        yield skipped
        yield last


def register_job_metrics(
    registry: CollectorRegistry, scheduler: SchedulerStats, *, prefix: str = "saasfw_job"
) -> Collector:
    """Expose ``scheduler``'s per-job runs, failures, skips and last success on ``registry``."""
    collector = _JobCollector(scheduler, prefix)
    registry.register(collector)
    return collector
