import saasfw.messaging
import saasfw.messaging.nats
import saasfw.messaging.rabbit


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.messaging.__all__ == [
        "CONTENT_TYPE",
        "Ack",
        "BrokerUnavailable",
        "CloudEvent",
        "ConsumerStats",
        "DeadLetter",
        "DeadLetterRecord",
        "DrainReport",
        "EventConsumer",
        "EventLogFilter",
        "EventRejected",
        "EventSigner",
        "EventVerifier",
        "MessagingError",
        "MessagingSettings",
        "MissingExtraError",
        "Observer",
        "Outcome",
        "Publisher",
        "Received",
        "RelaySettings",
        "ReplayRefused",
        "Retry",
        "SignatureError",
        "__version__",
        "add_event_context",
        "asyncapi_document",
        "asyncapi_router",
        "bind_correlation_id",
        "broker_check",
        "current_correlation_id",
        "current_event",
        "dead_letter_table",
        "get_dead_letter",
        "inbox_cleanup_job",
        "inbox_table",
        "list_dead_letters",
        "messaging_jobs",
        "messaging_production_problems",
        "observed_delivery",
        "parse_event",
        "prune_inbox",
        "relay_check",
        "replay_dead_letter",
    ]


def test_broker_modules_are_pinned() -> None:
    assert saasfw.messaging.rabbit.__all__ == [
        "RabbitConsumer",
        "RabbitDelivery",
        "RabbitTopology",
        "subscribe_rabbit",
    ]
    assert saasfw.messaging.nats.__all__ == [
        "NatsConsumer",
        "NatsDelivery",
        "NatsTopology",
        "subscribe_nats",
        "watch_max_deliveries",
    ]


def test_optional_modules_are_pinned() -> None:
    import pytest

    metrics = pytest.importorskip("saasfw.messaging.metrics", exc_type=ImportError)
    assert metrics.__all__ == ["MessagingMetrics", "SchedulerStats", "register_job_metrics"]
    tracing = pytest.importorskip("saasfw.messaging.tracing", exc_type=ImportError)
    assert tracing.__all__ == ["MessagingTracing", "current_traceparent"]
