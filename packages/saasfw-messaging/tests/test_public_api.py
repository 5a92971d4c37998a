import saasfw.messaging
import saasfw.messaging.nats
import saasfw.messaging.rabbit


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.messaging.__all__ == [
        "CONTENT_TYPE",
        "Ack",
        "CloudEvent",
        "ConsumerStats",
        "DeadLetter",
        "EventConsumer",
        "EventRejected",
        "EventSigner",
        "EventVerifier",
        "MessagingError",
        "MessagingSettings",
        "MissingExtraError",
        "Outcome",
        "Publisher",
        "Received",
        "RelaySettings",
        "Retry",
        "SignatureError",
        "__version__",
        "current_event",
        "inbox_table",
        "messaging_production_problems",
        "parse_event",
        "prune_inbox",
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
