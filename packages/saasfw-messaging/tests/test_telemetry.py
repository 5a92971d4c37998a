"""Metrics, spans and log context of a real flow: request -> outbox -> RabbitMQ -> consumer."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest

pytest.importorskip("prometheus_client", exc_type=ImportError)
pytest.importorskip("opentelemetry.sdk", exc_type=ImportError)

from faststream.rabbit import RabbitBroker
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, SecretStr
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from saasfw.core.jobs import Job, JobContext, JobScheduler, job_runs_table
from saasfw.core.outbox import OutboxRelay, outbox_tables
from saasfw.messaging import (
    BrokerUnavailable,
    CloudEvent,
    EventConsumer,
    EventLogFilter,
    EventSigner,
    EventVerifier,
    Publisher,
    Received,
    broker_check,
    inbox_table,
    observed_delivery,
)
from saasfw.messaging.metrics import MessagingMetrics, register_job_metrics
from saasfw.messaging.rabbit import RabbitDelivery, RabbitTopology, subscribe_rabbit
from saasfw.messaging.tracing import MessagingTracing, current_traceparent

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.slow]

SOURCE = "/services/orders"
KEY = SecretStr("telemetry-key-" + "t" * 32)
TYPE = "orders.order.created.v1"


class OrderCreated(BaseModel):
    order_id: str


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(EventLogFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_spans_metrics_and_log_lines_follow_each_event(
    rabbitmq_url: str, pg_engine: AsyncEngine, tools: Any
) -> None:
    metadata = MetaData()
    outbox = outbox_tables("telemetry_outbox", metadata=metadata)
    inbox = inbox_table(metadata=metadata)
    async with pg_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    sessions = async_sessionmaker(pg_engine, expire_on_commit=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    registry = CollectorRegistry()
    metrics = MessagingMetrics(registry)
    tracing = MessagingTracing(provider)
    handler_log = logging.getLogger("orders.handler")
    collect = Collect()
    handler_log.addHandler(collect)
    handler_log.setLevel(logging.INFO)
    failed_once: set[str] = set()

    async def ship(received: Received[OrderCreated], session: AsyncSession) -> None:
        order_id = received.data.order_id
        handler_log.info("shipping %s", order_id)
        if order_id == "poison" or (order_id == "flaky" and order_id not in failed_once):
            failed_once.add(order_id)
            raise RuntimeError(f"cannot ship {order_id}")

    consumer = EventConsumer(
        sessions,
        inbox,
        EventVerifier({SOURCE: {"k1": KEY}}),
        max_attempts=2,
        retry_backoff=0.05,
        observers=[metrics, tracing],
    )
    consumer.add_handler(TYPE, OrderCreated, ship)
    suffix = uuid.uuid4().hex[:10]
    topology = RabbitTopology(f"saasfw-tel-{suffix}", f"saasfw-tel-{suffix}")
    broker = RabbitBroker(rabbitmq_url, logger=None)
    subscription = subscribe_rabbit(broker, consumer, topology)
    await broker.connect()
    await subscription.declare()
    await broker.start()
    publisher = Publisher(
        outbox,
        EventSigner(SOURCE, "k1", KEY),
        traceparent=current_traceparent,
        correlation_id=lambda: "corr-123",
        actor=lambda: "user-7",
    )
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /orders") as request_span:
        async with sessions() as session, session.begin():
            for order_id in ("good", "flaky", "poison"):
                event = CloudEvent.create(TYPE, OrderCreated(order_id=order_id))
                await publisher.publish(session, event, key=order_id)
    request = request_span.get_span_context()
    stats = await metrics.sample_outbox(outbox, pg_engine)
    assert stats.depth == 3
    assert registry.get_sample_value("saasfw_messaging_outbox_depth") == 3
    assert registry.get_sample_value("saasfw_messaging_outbox_oldest_age_seconds") > 0
    await broker_check(broker)()  # the broker answers

    delivery = observed_delivery(RabbitDelivery(broker, topology.exchange), metrics, tracing)
    try:
        async with OutboxRelay(outbox, pg_engine, delivery, poll_interval=0.1):
            await tools.wait_for(
                lambda: _true(consumer.stats.processed == 2 and consumer.stats.dead_lettered == 1),
                "two events handled and the poison one dead-lettered",
                60,
            )
    finally:
        await broker.stop()
        handler_log.removeHandler(collect)
    await metrics.sample_outbox(outbox, pg_engine)
    assert registry.get_sample_value("saasfw_messaging_outbox_depth") == 0

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"type": TYPE, **labels})

    assert sample("saasfw_messaging_consumed_total", outcome="processed") == 2
    assert sample("saasfw_messaging_failed_total") == 3  # flaky once, poison twice
    assert sample("saasfw_messaging_redelivered_total") == 2  # flaky and poison, once each
    assert sample("saasfw_messaging_dead_lettered_total", reason="handler-failed") == 1
    assert sample("saasfw_messaging_consume_lag_seconds_count") == 2
    assert sample("saasfw_messaging_published_total", outcome="ok") == 3

    spans = exporter.get_finished_spans()
    process = [s for s in spans if s.kind == SpanKind.CONSUMER]
    publish = [s for s in spans if s.kind == SpanKind.PRODUCER]
    assert len(process) == 5  # good, flaky twice, poison twice
    assert len(publish) == 3
    for span in (*process, *publish):
        assert span.context.trace_id == request.trace_id
        assert span.parent is not None
        assert span.parent.span_id == request.span_id
    assert {s.name for s in process} == {f"{TYPE} process"}
    errors = [s for s in process if s.status.status_code == StatusCode.ERROR]
    assert len(errors) == 3
    assert all(s.attributes["saasfw.correlation_id"] == "corr-123" for s in process)

    lines = [r for r in collect.records if r.getMessage().startswith("shipping")]
    assert len(lines) == 5
    assert all(getattr(r, "correlation_id", None) == "corr-123" for r in lines)
    assert all(getattr(r, "actor", None) == "user-7" for r in lines)
    assert {getattr(r, "event_id", None) for r in lines} == {
        s.attributes["cloudevents.event_id"] for s in process
    }


async def test_broker_check_fails_when_the_broker_does_not_answer() -> None:
    broker = RabbitBroker("amqp://guest:guest@127.0.0.1:9/", logger=None)
    with pytest.raises(BrokerUnavailable, match="did not answer"):
        await broker_check(broker, timeout=0.5)()


async def test_job_metrics_expose_runs_and_last_success(engine: AsyncEngine) -> None:
    runs = job_runs_table()
    async with engine.begin() as conn:
        await conn.run_sync(runs.metadata.create_all)

    async def purge(context: JobContext) -> int:
        return 3

    scheduler = JobScheduler(engine, runs, [Job("purge", 3600.0, purge)])
    registry = CollectorRegistry()
    register_job_metrics(registry, scheduler)
    assert (
        registry.get_sample_value("saasfw_job_runs_total", {"job": "purge", "outcome": "succeeded"})
        == 0
    )
    await scheduler.run_due()
    assert (
        registry.get_sample_value("saasfw_job_runs_total", {"job": "purge", "outcome": "succeeded"})
        == 1
    )
    assert (
        registry.get_sample_value("saasfw_job_runs_total", {"job": "purge", "outcome": "failed"})
        == 0
    )
    last = registry.get_sample_value("saasfw_job_last_success_timestamp_seconds", {"job": "purge"})
    assert last is not None
    assert last > 0


async def _true(value: bool) -> bool:
    return value


def test_the_structlog_processor_adds_the_handled_event() -> None:
    from saasfw.messaging import add_event_context
    from saasfw.messaging._consumer import _current

    event = CloudEvent.create(TYPE, OrderCreated(order_id="a"), correlationid="c-1", actor="u-1")
    assert add_event_context(None, "info", {"event": "x"}) == {"event": "x"}
    token = _current.set(event)
    try:
        line = add_event_context(None, "info", {"event": "x", "actor": "explicit"})
    finally:
        _current.reset(token)
    assert line == {
        "event": "x",
        "event_id": event.id,
        "event_type": TYPE,
        "correlation_id": "c-1",
        "actor": "explicit",
    }
