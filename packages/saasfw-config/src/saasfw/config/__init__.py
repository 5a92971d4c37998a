"""saasfw.config: see this distribution's README for what it owns."""

from saasfw.config._version import __version__

__all__ = ["__version__"]
