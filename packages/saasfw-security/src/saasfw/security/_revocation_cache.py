"""The in-process copy of live revocations that the SQL store answers checks from.

Keys are the store's digests of token ids, families and subjects. Every entry keeps its
expiry, so an entry that outlives its token simply stops counting; expired entries are
purged amortised. Values only ever move forward (a later expiry, a later not-before), which
makes applying a notification and merging a reloaded snapshot commutative: whatever order a
reload and the notifications racing it arrive in, the result is the same.
"""

from __future__ import annotations

import hashlib

__all__ = ["KINDS", "Digests", "RevocationCache", "digest", "format_change", "parse_change"]

#: Change kinds: a revoked token id, a revoked family, a subject's not-before.
KINDS = ("jti", "fam", "nbf")


def digest(value: str) -> str:
    """Fixed-length key for a client-influenced string (no length or character surprises)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:40]


class Digests:
    """:func:`digest` memoised: a token seen on every request is hashed once, not per check.

    Bounded (a few MB at ``most`` entries); cleared when full.
    """

    def __init__(self, most: int = 50_000) -> None:
        self._memo: dict[str, str] = {}
        self._most = most

    def __call__(self, value: str) -> str:
        key = self._memo.get(value)
        if key is None:
            if len(self._memo) >= self._most:
                self._memo.clear()
            key = self._memo[value] = digest(value)
        return key


def format_change(kind: str, key: str, expires_at: float, not_before: float = 0.0) -> str:
    """The NOTIFY payload for one write (digests and numbers only, never a raw value)."""
    return f"{kind} {key} {expires_at!r} {not_before!r}"


def parse_change(payload: str) -> tuple[str, str, float, float] | None:
    """Inverse of :func:`format_change`; None for anything this store did not write."""
    parts = payload.split(" ")
    if len(parts) != 4 or parts[0] not in KINDS:
        return None
    try:
        return parts[0], parts[1], float(parts[2]), float(parts[3])
    except ValueError:
        return None


class RevocationCache:
    """Live revocations by digest: revoked ids, revoked families, per-subject not-before."""

    def __init__(self, *, purge_every: int = 1024) -> None:
        self.tokens: dict[str, float] = {}
        self.families: dict[str, float] = {}
        self.not_before: dict[str, tuple[float, float]] = {}
        self._purge_every = purge_every
        self._applied = 0

    def __len__(self) -> int:
        return len(self.tokens) + len(self.families) + len(self.not_before)

    def clear(self) -> None:
        self.tokens.clear()
        self.families.clear()
        self.not_before.clear()

    def apply(self, kind: str, key: str, expires_at: float, not_before: float, now: float) -> None:
        """Record one revocation (idempotent; a value never moves backwards)."""
        if kind == "nbf":
            old = self.not_before.get(key)
            if old is None:
                self.not_before[key] = (not_before, expires_at)
            else:
                self.not_before[key] = (max(old[0], not_before), max(old[1], expires_at))
        else:
            table = self.tokens if kind == "jti" else self.families
            table[key] = max(expires_at, table.get(key, 0.0))
        self._applied += 1
        if self._applied % self._purge_every == 0:
            self.purge(now)

    def purge(self, now: float) -> None:
        """Drop entries whose token is dead anyway."""
        for table in (self.tokens, self.families):
            for key in [k for k, until in table.items() if until <= now]:
                del table[key]
        for key in [k for k, (_, until) in self.not_before.items() if until <= now]:
            del self.not_before[key]

    def is_revoked(
        self,
        jti_key: str | None,
        family_key: str | None,
        subject_key: str,
        issued_at: float | None,
        now: float,
    ) -> bool:
        if jti_key is not None:
            until = self.tokens.get(jti_key)
            if until is not None and until > now:
                return True
        if family_key is not None:
            until = self.families.get(family_key)
            if until is not None and until > now:
                return True
        nbf = self.not_before.get(subject_key)
        if nbf is not None and nbf[1] > now:
            return (issued_at if issued_at is not None else 0.0) < nbf[0]
        return False
