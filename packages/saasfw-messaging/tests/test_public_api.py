import saasfw.messaging


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.messaging.__all__ == [
        "CONTENT_TYPE",
        "CloudEvent",
        "EventRejected",
        "EventSigner",
        "EventVerifier",
        "MessagingError",
        "MessagingSettings",
        "MissingExtraError",
        "RelaySettings",
        "SignatureError",
        "__version__",
        "parse_event",
    ]
    assert saasfw.messaging.__all__ == sorted(saasfw.messaging.__all__)
