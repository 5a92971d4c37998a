"""One PostgreSQL LISTEN connection that says when the revocation cache may be trusted.

The cache is trusted only while the listening connection is alive *and* a full reload has
completed after LISTEN took effect: a write committed before LISTEN is in the reload, one
committed after it is notified, so nothing falls between the two. Whenever the connection
is lost (server restart, ``pg_terminate_backend``, a failed heartbeat) trust is withdrawn at
once, the store reads the database on every check, and the listener reconnects with
backoff and reloads before trusting the cache again, since notifications sent while it was
away are gone.

Liveness is proven end to end, not assumed: after each reload and then every ``heartbeat``
seconds, a probe NOTIFY sent through the pool must come back on the listening connection.
That also catches LISTEN that silently hears nothing (a pooler in transaction mode hands
the session to someone else), which would otherwise leave a trusted cache that never
learns of a revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["PROBE", "RevocationListener"]

#: Payload prefix of liveness probes (every listener ignores probes it did not send).
PROBE = "probe "

_log = logging.getLogger("saasfw.security.revocation")


class RevocationListener:
    """Keeps LISTEN running on one connection borrowed from the engine's pool.

    The connection is never handed back to the pool (it is invalidated when the listener
    stops), so its ``application_name`` and LISTEN never leak to other users of the pool.

    Args:
        engine: a SQLAlchemy ``AsyncEngine`` on the asyncpg driver.
        channel: the notification channel.
        application_name: set on the listening session (visible in ``pg_stat_activity``).
        on_change: called with each payload, in commit order.
        reload: clears and refills the cache from the tables; awaited after each LISTEN.
        notify: sends a payload on the channel through another connection (the probe).
        heartbeat: seconds between liveness probes, bounding how long a connection that
            died silently (no TCP reset) or hears nothing can be trusted.
        timeout: seconds allowed for connecting, reloading and each probe's round trip.
        retry_min / retry_max: the reconnect backoff starts at ``retry_min`` and doubles up
            to ``retry_max`` seconds.
    """

    def __init__(
        self,
        engine: Any,
        *,
        channel: str,
        application_name: str,
        on_change: Callable[[str], None],
        reload: Callable[[], Awaitable[None]],
        notify: Callable[[str], Awaitable[None]],
        heartbeat: float = 5.0,
        timeout: float = 5.0,
        retry_min: float = 0.1,
        retry_max: float = 5.0,
    ) -> None:
        self._engine = engine
        self.channel = channel
        self.application_name = application_name
        self._on_change = on_change
        self._reload = reload
        self._notify = notify
        self._probe_payload = ""
        self._probe_arrived = asyncio.Event()
        self._driver: Any = None
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.trusted = False
        self.sessions = 0  # how many times LISTEN was (re)established and the cache reloaded
        self._trusted_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_trusted(self) -> None:
        """Wait until the cache is trusted (bound it with ``asyncio.timeout``)."""
        while not self.trusted:
            await self._trusted_event.wait()

    async def aclose(self) -> None:
        self._distrust()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _distrust(self, *_: object) -> None:
        self.trusted = False
        self._trusted_event.clear()

    def _notified(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(PROBE):
            if payload == self._probe_payload:
                self._probe_arrived.set()
            return
        self._on_change(payload)

    async def _probe(self) -> None:
        """Return once a NOTIFY sent through the pool has arrived on this connection."""
        self._probe_payload = f"{PROBE}{secrets.token_hex(8)}"
        self._probe_arrived.clear()
        await self._notify(self._probe_payload)
        await self._probe_arrived.wait()

    async def _run(self) -> None:
        backoff = self.retry_min
        while True:
            try:
                await self._session()
                backoff = self.retry_min
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Type only: driver messages can carry host names and other connection details.
                _log.warning(
                    "revocation listener lost (%s); checks read the database until it is back",
                    type(exc).__name__,
                )
            self._distrust()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.retry_max)

    async def _session(self) -> None:
        async with asyncio.timeout(self.timeout):
            conn = await self._engine.connect()
        try:
            async with asyncio.timeout(self.timeout):
                raw = await conn.get_raw_connection()
                driver = self._driver = raw.driver_connection
                lost = asyncio.Event()

                def terminated(_conn: object) -> None:
                    self._distrust()
                    lost.set()

                driver.add_termination_listener(terminated)
                await driver.execute(
                    "SELECT set_config('application_name', $1, false)", self.application_name
                )
                await driver.add_listener(self.channel, self._notified)
                await self._reload()
                await self._probe()
            if lost.is_set():
                return
            self.sessions += 1
            self.trusted = True
            self._trusted_event.set()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.heartbeat):
                        await lost.wait()
                if not lost.is_set():
                    async with asyncio.timeout(self.timeout):
                        await self._probe()
        finally:
            self._distrust()
            self._driver = None
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()
