"""Redis revocation store: shared by every worker and replica.

Checks answer from an in-process copy of the live revocations while a subscription to the
store's change channel is trusted (:mod:`saasfw.security._revocation_listen`): every write
sets its key and publishes the change in one MULTI, so each replica's copy learns of it
within a round trip, and a replica whose subscription is down (Redis restarting, a
network cut, a silent connection caught by the heartbeat) reads Redis on every check, one
``MGET``, until it has subscribed and reloaded again. Without :meth:`start` (or with
``listen=False``) every check reads Redis.

Writers that do not announce (replicas of saasfw-security before 0.3.1, during a rolling
deploy, or a key set by hand) are picked up by a rescan every ``refresh`` seconds, merged
into the copy without clearing it, so a check never sees a half-built copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from saasfw.security._errors import MissingExtraError
from saasfw.security._revocation_cache import (
    KINDS,
    Digests,
    RevocationCache,
    format_change,
    parse_change,
)
from saasfw.security._revocation_listen import (
    ListenedStore,
    RevocationListener,
    redis_subscription,
)

__all__ = ["RedisRevocationStore"]

_log = logging.getLogger("saasfw.security.revocation")


class RedisRevocationStore(ListenedStore):
    """Revocation state in Redis; every key carries a TTL equal to the token's remaining life.

    Args:
        client: a ``redis.asyncio.Redis`` client (``decode_responses`` may be either).
        prefix: key prefix, e.g. ``"orders:revocation:"``; the change channel is
            ``<prefix>changes``.
        listen: keep a local copy current through the change channel once :meth:`start`
            ran (checks then make no round trip); False reads Redis on every check.
        heartbeat: seconds between the subscription's liveness probes.
        timeout: seconds allowed to subscribe, reload and answer a probe.
        refresh: seconds between rescans of the keys (writers that do not announce).
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "saasfw:revocation:",
        listen: bool = True,
        heartbeat: float = 5.0,
        timeout: float = 5.0,
        refresh: float = 10.0,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise MissingExtraError("RedisRevocationStore", "redis") from None
        self._redis = client
        self._prefix = prefix
        self.channel = f"{prefix}changes"
        self._cache = RevocationCache()
        self._digest = Digests()
        self._listener: RevocationListener | None = None
        self.refresh = refresh
        self._refresher: asyncio.Task[None] | None = None
        if listen:
            self._listener = RevocationListener(
                redis_subscription(client, self.channel),
                on_change=self._on_change,
                reload=self._reload,
                notify=self._notify,
                heartbeat=heartbeat,
                timeout=timeout,
            )
        self.cache_checks = 0
        self.redis_checks = 0

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "saasfw:revocation:", listen: bool = True
    ) -> RedisRevocationStore:
        """Build a store with its own client and short socket timeouts."""
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover
            raise MissingExtraError("RedisRevocationStore", "redis") from None
        client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, prefix=prefix, listen=listen)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe to the change channel; checks read Redis until the copy is trusted."""
        if self._listener is not None:
            self._listener.start()
            if self._refresher is None:
                self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            try:
                await self._scan_into(self._cache)
            except Exception as exc:  # the subscription's own failure handling decides trust
                _log.warning("revocation rescan failed (%s)", type(exc).__name__)

    async def aclose(self) -> None:
        """Stop listening and close the client (when built by :meth:`from_url`)."""
        refresher, self._refresher = self._refresher, None
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        if self._listener is not None:
            await self._listener.aclose()
        await self._redis.aclose()

    # -- the copy --------------------------------------------------------------------------

    def _on_change(self, payload: str) -> None:
        change = parse_change(payload)
        if change is None:
            _log.warning("ignored a malformed revocation change on %s", self.channel)
            return
        self._cache.apply(*change, now=time.time())

    async def _reload(self) -> None:
        # Runs while the copy is not trusted. Clearing may drop a change announced a moment
        # ago; harmless, because the key was set in the same MULTI as the announcement, so
        # the scan below finds it. Keys deleted by hand disappear from the copy here.
        self._cache.clear()
        await self._scan_into(self._cache)

    async def _scan_into(self, cache: RevocationCache) -> None:
        """Apply every live key to ``cache`` (values only move forward: a merge is safe)."""
        now = time.time()
        for kind in KINDS:
            keys = [key async for key in self._redis.scan_iter(match=f"{self._prefix}{kind}:*")]
            for start in range(0, len(keys), 500):
                batch = keys[start : start + 500]
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in batch:
                        pipe.pttl(key)
                        pipe.get(key)
                    replies = await pipe.execute()
                for key, ttl, value in zip(batch, replies[0::2], replies[1::2], strict=True):
                    if value is None or ttl == -2:
                        continue  # expired between the scan and the read
                    expires_at = now + ttl / 1000 if ttl >= 0 else float("inf")
                    name = key.decode() if isinstance(key, bytes) else str(key)
                    suffix = name[len(self._prefix) + len(kind) + 1 :]
                    not_before = float(value) if kind == "nbf" else 0.0
                    cache.apply(kind, suffix, expires_at, not_before, now)

    async def _notify(self, payload: str) -> None:
        await self._redis.publish(self.channel, payload)

    # -- checks ----------------------------------------------------------------------------

    def _key(self, kind: str, value: str) -> str:
        return f"{self._prefix}{kind}:{self._digest(value)}"

    async def is_revoked(
        self, *, jti: str | None, family: str | None, subject: str, issued_at: float | None
    ) -> bool:
        listener = self._listener
        if listener is not None and listener.trusted:
            self.cache_checks += 1
            return self._cache.is_revoked(
                None if jti is None else self._digest(jti),
                None if family is None else self._digest(family),
                self._digest(subject),
                issued_at,
                time.time(),
            )
        self.redis_checks += 1
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

    # -- writes ----------------------------------------------------------------------------

    async def _write(self, kind: str, value: str, stored: bytes, ttl_ms: int, nbf: float) -> None:
        """SET the key and announce it in one MULTI: no replica hears of a change it
        cannot read, and no change is set without being announced."""
        key = self._digest(value)
        expires_at = time.time() + ttl_ms / 1000
        payload = format_change(kind, key, expires_at, nbf)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{self._prefix}{kind}:{key}", stored, px=ttl_ms)
            pipe.publish(self.channel, payload)
            await pipe.execute()
        self._cache.apply(kind, key, expires_at, nbf, time.time())

    @staticmethod
    def _ttl_ms(expires_at: float) -> int:
        return max(1, int((expires_at - time.time()) * 1000) + 1000)

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        await self._write("jti", jti, b"1", self._ttl_ms(expires_at), 0.0)

    async def revoke_family(self, family: str, expires_at: float) -> None:
        await self._write("fam", family, b"1", self._ttl_ms(expires_at), 0.0)

    async def set_not_before(self, subject: str, not_before: float, ttl: float) -> None:
        stored = repr(not_before).encode()
        await self._write("nbf", subject, stored, max(1, int(ttl * 1000)), not_before)

    async def mark_used(self, jti: str, expires_at: float) -> bool:
        created = await self._redis.set(
            self._key("used", jti), b"1", nx=True, px=self._ttl_ms(expires_at)
        )
        return bool(created)
