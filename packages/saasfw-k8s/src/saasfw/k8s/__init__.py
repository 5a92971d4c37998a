"""saasfw.k8s: see this distribution's README for what it owns."""

from saasfw.k8s._version import __version__

__all__ = ["__version__"]
