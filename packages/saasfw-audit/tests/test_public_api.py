import saasfw.audit


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.audit.__all__ == sorted(saasfw.audit.__all__)
    assert saasfw.audit.__all__ == ["__version__"]


def test_version_comes_from_distribution_metadata() -> None:
    assert saasfw.audit.__version__ == "0.1.0"
