"""Revocation state for tokens: revoked ids, revoked refresh families, per-user not-before.

Every entry expires with the token it concerns, so the store stays bounded by the number
of live tokens. The verifier asks the store on *every* verification, including hits in its
verified-token cache: revocation is state, and caching it would delay a logout.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["MemoryRevocationStore", "RevocationStore"]


class RevocationStore(Protocol):
    """Storage port for revocation state (memory, Redis, or your own)."""

    async def is_revoked(
        self, *, jti: str | None, family: str | None, subject: str, issued_at: float | None
    ) -> bool:
        """True if the token id or its family is revoked, or it predates the subject's
        not-before. A token without ``iat`` counts as issued at the epoch."""
        ...

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        """Revoke one token id until ``expires_at`` (when the token dies anyway)."""
        ...

    async def revoke_family(self, family: str, expires_at: float) -> None:
        """Revoke every token of a refresh-token family."""
        ...

    async def set_not_before(self, subject: str, not_before: float, ttl: float) -> None:
        """Refuse the subject's tokens issued before ``not_before`` (log out everywhere)."""
        ...

    async def mark_used(self, jti: str, expires_at: float) -> bool:
        """Atomically record a refresh-token use; True the first time, False on reuse."""
        ...


class MemoryRevocationStore:
    """Process-local store: correct for one process; use Redis with several workers."""

    def __init__(self) -> None:
        self._tokens: dict[str, float] = {}
        self._families: dict[str, float] = {}
        self._not_before: dict[str, tuple[float, float]] = {}
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()
        self._writes = 0

    async def is_revoked(
        self, *, jti: str | None, family: str | None, subject: str, issued_at: float | None
    ) -> bool:
        now = time.time()
        if jti is not None:
            until = self._tokens.get(jti)
            if until is not None and until > now:
                return True
        if family is not None:
            until = self._families.get(family)
            if until is not None and until > now:
                return True
        nbf = self._not_before.get(subject)
        if nbf is not None and nbf[1] > now:
            return (issued_at if issued_at is not None else 0.0) < nbf[0]
        return False

    def _purge(self, now: float) -> None:
        # Amortised: purge expired entries every 1024 writes so memory stays bounded.
        self._writes += 1
        if self._writes % 1024:
            return
        for table in (self._tokens, self._families, self._used):
            for key in [k for k, until in table.items() if until <= now]:
                del table[key]
        for key in [k for k, (_, until) in self._not_before.items() if until <= now]:
            del self._not_before[key]

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        with self._lock:
            self._tokens[jti] = max(expires_at, self._tokens.get(jti, 0.0))
            self._purge(time.time())

    async def revoke_family(self, family: str, expires_at: float) -> None:
        with self._lock:
            self._families[family] = max(expires_at, self._families.get(family, 0.0))
            self._purge(time.time())

    async def set_not_before(self, subject: str, not_before: float, ttl: float) -> None:
        with self._lock:
            self._not_before[subject] = (not_before, time.time() + ttl)
            self._purge(time.time())

    async def mark_used(self, jti: str, expires_at: float) -> bool:
        now = time.time()
        with self._lock:
            until = self._used.get(jti)
            if until is not None and until > now:
                return False
            self._used[jti] = expires_at
            self._purge(now)
            return True
