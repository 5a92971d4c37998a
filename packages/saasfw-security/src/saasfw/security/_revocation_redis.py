"""Redis revocation store: shared by every worker and replica, one round trip per check."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from saasfw.security._errors import MissingExtraError

__all__ = ["RedisRevocationStore"]


def _digest(value: str) -> str:
    # Keys never embed raw client-controlled strings: fixed length, no control characters.
    return hashlib.sha256(value.encode()).hexdigest()[:40]


class RedisRevocationStore:
    """Revocation state in Redis; every key carries a TTL equal to the token's remaining life.

    Args:
        client: a ``redis.asyncio.Redis`` client (``decode_responses`` may be either).
        prefix: key prefix, e.g. ``"orders:revocation:"``.
    """

    def __init__(self, client: Any, *, prefix: str = "saasfw:revocation:") -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise MissingExtraError("RedisRevocationStore", "redis") from None
        self._redis = client
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "saasfw:revocation:") -> RedisRevocationStore:
        """Build a store with its own client and short socket timeouts."""
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover
            raise MissingExtraError("RedisRevocationStore", "redis") from None
        client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, prefix=prefix)

    def _key(self, kind: str, value: str) -> str:
        return f"{self._prefix}{kind}:{_digest(value)}"

    async def is_revoked(
        self, *, jti: str | None, family: str | None, subject: str, issued_at: float | None
    ) -> bool:
        keys = [self._key("nbf", subject)]
        if jti is not None:
            keys.append(self._key("jti", jti))
        if family is not None:
            keys.append(self._key("fam", family))
        values = await self._redis.mget(keys)
        if any(v is not None for v in values[1:]):
            return True
        if values[0] is not None:
            return (issued_at if issued_at is not None else 0.0) < float(values[0])
        return False

    @staticmethod
    def _ttl_ms(expires_at: float) -> int:
        return max(1, int((expires_at - time.time()) * 1000) + 1000)

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        await self._redis.set(self._key("jti", jti), b"1", px=self._ttl_ms(expires_at))

    async def revoke_family(self, family: str, expires_at: float) -> None:
        await self._redis.set(self._key("fam", family), b"1", px=self._ttl_ms(expires_at))

    async def set_not_before(self, subject: str, not_before: float, ttl: float) -> None:
        await self._redis.set(
            self._key("nbf", subject), repr(not_before).encode(), px=max(1, int(ttl * 1000))
        )

    async def mark_used(self, jti: str, expires_at: float) -> bool:
        created = await self._redis.set(
            self._key("used", jti), b"1", nx=True, px=self._ttl_ms(expires_at)
        )
        return bool(created)

    async def aclose(self) -> None:
        """Close the client (when built by :meth:`from_url`)."""
        await self._redis.aclose()
