import saasfw.k8s


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.k8s.__all__ == sorted(saasfw.k8s.__all__)
    assert saasfw.k8s.__all__ == ["__version__"]


def test_version_comes_from_distribution_metadata() -> None:
    assert saasfw.k8s.__version__ == "0.1.0"
