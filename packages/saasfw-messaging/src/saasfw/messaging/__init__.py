"""saasfw.messaging: events between services through a transactional outbox."""

from __future__ import annotations

from saasfw.messaging._version import __version__

__all__ = ["__version__"]
