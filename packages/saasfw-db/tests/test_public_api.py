import saasfw.db


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.db.__all__ == sorted(saasfw.db.__all__)
    assert saasfw.db.__all__ == ["__version__"]


def test_version_comes_from_distribution_metadata() -> None:
    assert saasfw.db.__version__ == "0.1.0"
