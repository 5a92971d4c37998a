"""Redis session store: shared by every worker; every key expires."""

from __future__ import annotations

import hashlib
from typing import Any

from saasfw.security._errors import MissingExtraError
from saasfw.security._sessions import Session

__all__ = ["RedisSessionStore"]


class RedisSessionStore:
    """Sessions as ``<prefix>s:<digest>`` strings plus a per-user index set.

    Args:
        client: a ``redis.asyncio.Redis`` client.
        prefix: key prefix.
        index_ttl: lifetime of the per-user index (at least the absolute session timeout).
    """

    def __init__(
        self, client: Any, *, prefix: str = "saasfw:session:", index_ttl: float = 24 * 3600
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise MissingExtraError("RedisSessionStore", "redis") from None
        self._redis = client
        self._prefix = prefix
        self._index_ttl_ms = int(index_ttl * 1000)

    def _key(self, digest: str) -> str:
        return f"{self._prefix}s:{digest}"

    def _user_key(self, user_id: str) -> str:
        return f"{self._prefix}u:{hashlib.sha256(user_id.encode()).hexdigest()[:40]}"

    async def save(self, digest: str, session: Session, ttl: float) -> None:
        user_key = self._user_key(session.user_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(digest), session.to_json(), px=max(1, int(ttl * 1000)))
            pipe.sadd(user_key, digest)
            pipe.pexpire(user_key, self._index_ttl_ms)
            await pipe.execute()

    async def load(self, digest: str, session_id: str) -> Session | None:
        raw = await self._redis.get(self._key(digest))
        return None if raw is None else Session.from_json(session_id, raw)

    async def delete(self, digest: str, user_id: str | None = None) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(digest))
            if user_id is not None:
                pipe.srem(self._user_key(user_id), digest)
            await pipe.execute()

    async def delete_user(self, user_id: str) -> int:
        user_key = self._user_key(user_id)
        digests = await self._redis.smembers(user_key)
        keys = [self._key(d.decode() if isinstance(d, bytes) else d) for d in digests]
        deleted = 0
        async with self._redis.pipeline(transaction=True) as pipe:
            if keys:
                pipe.delete(*keys)
            pipe.delete(user_key)
            results = await pipe.execute()
        if keys:
            deleted = int(results[0])
        return deleted
