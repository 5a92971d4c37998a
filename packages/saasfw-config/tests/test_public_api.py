import saasfw.config


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.config.__all__ == sorted(saasfw.config.__all__)
    assert saasfw.config.__all__ == ["__version__"]


def test_version_comes_from_distribution_metadata() -> None:
    assert saasfw.config.__version__ == "0.1.0"
