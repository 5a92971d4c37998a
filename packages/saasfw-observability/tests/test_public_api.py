import saasfw.observability


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.observability.__all__ == sorted(saasfw.observability.__all__)
    assert saasfw.observability.__all__ == ["__version__"]


def test_version_comes_from_distribution_metadata() -> None:
    assert saasfw.observability.__version__ == "0.1.0"
