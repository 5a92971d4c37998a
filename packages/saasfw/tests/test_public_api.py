import saasfw.app


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.app.__all__ == sorted(saasfw.app.__all__)
    assert saasfw.app.__all__ == ["__version__"]


def test_version_comes_from_distribution_metadata() -> None:
    assert saasfw.app.__version__ == "0.1.0"
