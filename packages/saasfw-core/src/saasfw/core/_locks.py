"""PostgreSQL advisory-lock keys: one stable 64-bit number per name, the same in every process."""

from __future__ import annotations

import hashlib

__all__ = ["advisory_lock_key"]


def advisory_lock_key(name: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock`` derived from ``name``.

    Replicas of any version compute the same key for the same name (no per-process hash
    seed), so they serialise on it; distinct names practically never collide.
    """
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
