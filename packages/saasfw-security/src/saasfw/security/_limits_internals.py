"""The one place that reaches into ``limits``' internals: the Redis client behind its storage.

``limits``' async ``RedisStorage`` has no public accessor for the redis-py client it drives.
The rate limiter needs that client twice: to PING Redis with the client's own exceptions
(``limits``' ``check()`` turns every error into False, which hides whether the storage
failed or this process was short of connections) and to close its connections at shutdown.
``limits`` 5.x keeps the client at ``storage.bridge.storage``; 4.x kept it at
``storage.storage``.

Fallback: when neither place holds an object with a ``connection_pool`` (another layout,
or a storage that is not Redis), :func:`redis_client` returns None. The caller then asks
``storage.check()`` for health (true/false only) and leaves the connections to the
garbage collector. ``tests/test_limits_internals.py`` checks both, at the newest and at the
lowest ``limits`` the pyproject allows.
"""

from __future__ import annotations

from typing import Any

__all__ = ["redis_client"]


def redis_client(storage: object) -> Any | None:
    """The redis-py client behind a ``limits`` async ``RedisStorage`` (None for others).

    Only objects with a ``connection_pool`` count, so a changed layout yields None (the
    caller then skips what needed the client) instead of a wrong object.
    """
    for client in (
        getattr(getattr(storage, "bridge", None), "storage", None),
        getattr(storage, "storage", None),
    ):
        if client is not None and hasattr(client, "connection_pool"):
            return client
    return None
