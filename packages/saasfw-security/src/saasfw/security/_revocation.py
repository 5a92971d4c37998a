"""Revocation state for tokens: revoked ids, revoked refresh families, per-user not-before.

Every entry expires with the token it concerns, so the store stays bounded by the number
of live tokens. The verifier asks the store on *every* verification, including hits in its
verified-token cache: revocation is state, and caching it would delay a logout.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["CachedRevocationStore", "MemoryRevocationStore", "RevocationStore"]


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


class CachedRevocationStore:
    """Opt-in: remember revocation answers of a shared store for ``ttl`` seconds.

    Trades exactness for speed. Writes made through this object clear the local memory, so
    a logout handled by this process applies at once here; a logout handled by another
    worker applies here within ``ttl``. Keep ``ttl`` small (default one second) and use the
    plain store where a revocation must bite immediately everywhere.

    Args:
        inner: the shared store (typically :class:`RedisRevocationStore`).
        ttl: seconds an answer is reused.
        max_entries: bound on remembered answers (the memory is cleared when reached).
    """

    def __init__(
        self, inner: RevocationStore, *, ttl: float = 1.0, max_entries: int = 100_000
    ) -> None:
        if not 0 < ttl <= 60:
            raise ValueError("ttl must be in (0, 60] seconds")
        self.inner = inner
        self.ttl = ttl
        self.max_entries = max_entries
        self._answers: dict[tuple[str | None, str | None, str, float | None], tuple[float, bool]]
        self._answers = {}

    async def is_revoked(
        self, *, jti: str | None, family: str | None, subject: str, issued_at: float | None
    ) -> bool:
        key = (jti, family, subject, issued_at)
        now = time.monotonic()
        hit = self._answers.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        answer = await self.inner.is_revoked(
            jti=jti, family=family, subject=subject, issued_at=issued_at
        )
        if len(self._answers) >= self.max_entries:
            self._answers.clear()
        self._answers[key] = (now + self.ttl, answer)
        return answer

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        await self.inner.revoke_token(jti, expires_at)
        self._answers.clear()

    async def revoke_family(self, family: str, expires_at: float) -> None:
        await self.inner.revoke_family(family, expires_at)
        self._answers.clear()

    async def set_not_before(self, subject: str, not_before: float, ttl: float) -> None:
        await self.inner.set_not_before(subject, not_before, ttl)
        self._answers.clear()

    async def mark_used(self, jti: str, expires_at: float) -> bool:
        return await self.inner.mark_used(jti, expires_at)
