import saasfw.security


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.security.__all__ == sorted(saasfw.security.__all__)
    assert saasfw.security.__all__ == ["__version__"]


def test_version_comes_from_distribution_metadata() -> None:
    assert saasfw.security.__version__ == "0.1.0"
