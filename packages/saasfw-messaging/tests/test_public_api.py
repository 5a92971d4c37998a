import saasfw.messaging


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.messaging.__all__ == ["__version__"]
