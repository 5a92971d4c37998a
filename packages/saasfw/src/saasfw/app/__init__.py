"""saasfw.app: see this distribution's README for what it owns."""

from saasfw.app._version import __version__

__all__ = ["__version__"]
