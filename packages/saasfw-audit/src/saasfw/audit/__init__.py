"""saasfw.audit: see this distribution's README for what it owns."""

from saasfw.audit._version import __version__

__all__ = ["__version__"]
