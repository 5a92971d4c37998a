"""One listening connection that says when a revocation store's local copy may be trusted.

The same rule serves PostgreSQL (LISTEN/NOTIFY, :func:`pg_subscription`) and Redis
(SUBSCRIBE/PUBLISH, :func:`redis_subscription`). The copy is trusted only while the
listening connection is alive *and* a full reload has completed after the subscription
took effect: a write made before it is in the reload, one made after it is announced, so
nothing falls between the two. Whenever the connection is lost (server restart, a killed
session, a failed heartbeat) trust is withdrawn at once, the store reads the shared store
on every check, and the listener reconnects with backoff and reloads before trusting the
copy again, since announcements sent while it was away are gone.

Liveness is proven end to end, not assumed: after each reload and then every ``heartbeat``
seconds, a probe sent through the ordinary client must come back on the listening
connection. That also catches a subscription that silently hears nothing (a pooler in
transaction mode hands the session to someone else), which would otherwise leave a trusted
copy that never learns of a revocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

__all__ = [
    "PROBE",
    "ListenedStore",
    "RevocationListener",
    "Subscribe",
    "pg_subscription",
    "redis_subscription",
]

#: Payload prefix of liveness probes (every listener ignores probes it did not send).
PROBE = "probe "

_log = logging.getLogger("saasfw.security.revocation")


Subscribe = Callable[[Callable[[str], None], Callable[[], None]], AbstractAsyncContextManager[Any]]
"""``subscribe(on_message, on_lost)``: an open subscription while the block runs. Every
payload on the channel goes to ``on_message`` in order; ``on_lost`` is called as soon as the
connection is known to be gone. What it yields is kept as ``RevocationListener.connection``."""


def pg_subscription(engine: Any, channel: str, application_name: str) -> Subscribe:
    """LISTEN on one connection borrowed from ``engine``'s pool (asyncpg).

    The connection is never handed back to the pool (it is invalidated at the end), so its
    ``application_name`` and LISTEN never leak to other users of the pool.
    """

    @asynccontextmanager
    async def subscribe(
        on_message: Callable[[str], None], on_lost: Callable[[], None]
    ) -> AsyncIterator[Any]:
        conn = await engine.connect()
        try:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            driver.add_termination_listener(lambda _conn: on_lost())
            await driver.execute(
                "SELECT set_config('application_name', $1, false)", application_name
            )
            await driver.add_listener(
                channel, lambda _conn, _pid, _channel, payload: on_message(payload)
            )
            yield driver
        finally:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    return subscribe


def redis_subscription(client: Any, channel: str) -> Subscribe:
    """SUBSCRIBE on a connection of its own, made like ``client``'s (redis-py asyncio).

    A bare connection, not redis-py's ``PubSub``: that one reconnects and subscribes again
    by itself, so announcements published in between would be lost without anyone knowing.
    Here any read error ends the subscription and withdraws trust.
    """

    @asynccontextmanager
    async def subscribe(
        on_message: Callable[[str], None], on_lost: Callable[[], None]
    ) -> AsyncIterator[Any]:
        conn = client.connection_pool.make_connection()
        reader: asyncio.Task[None] | None = None
        try:
            await conn.connect()
            await conn.send_command("SUBSCRIBE", channel)
            await conn.read_response(push_request=True)  # the subscribe confirmation

            async def read() -> None:
                try:
                    while True:
                        reply = await conn.read_response(timeout=math.inf, push_request=True)
                        kind = _text(reply[0]) if isinstance(reply, list) and reply else ""
                        if kind == "message" and len(reply) == 3:
                            on_message(_text(reply[2]))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    _log.warning("revocation subscription lost (%s)", type(exc).__name__)
                finally:
                    on_lost()

            reader = asyncio.get_running_loop().create_task(read())
            yield conn
        finally:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            with contextlib.suppress(Exception):
                await conn.disconnect()

    return subscribe


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RevocationListener:
    """Keeps one subscription running and says whether the local copy is current.

    Args:
        subscribe: opens the subscription (:func:`pg_subscription`,
            :func:`redis_subscription`).
        on_change: called with each payload, in the order it was sent.
        reload: clears and refills the copy from the shared store; awaited after each
            subscription is open.
        notify: sends a payload on the channel through another connection (the probe).
        heartbeat: seconds between liveness probes, bounding how long a connection that
            died silently (no TCP reset) or hears nothing can be trusted.
        timeout: seconds allowed for connecting, reloading and each probe's round trip.
        retry_min / retry_max: the reconnect backoff starts at ``retry_min`` and doubles up
            to ``retry_max`` seconds.
    """

    def __init__(
        self,
        subscribe: Subscribe,
        *,
        on_change: Callable[[str], None],
        reload: Callable[[], Awaitable[None]],
        notify: Callable[[str], Awaitable[None]],
        heartbeat: float = 5.0,
        timeout: float = 5.0,
        retry_min: float = 0.1,
        retry_max: float = 5.0,
    ) -> None:
        self._subscribe = subscribe
        self._on_change = on_change
        self._reload = reload
        self._notify = notify
        self._probe_payload = ""
        self._probe_arrived = asyncio.Event()
        self.connection: Any = None  # what the subscription yielded, while it is open
        self.heartbeat = heartbeat
        self.timeout = timeout
        self.retry_min = retry_min
        self.retry_max = retry_max
        self.trusted = False
        self.sessions = 0  # how many times the subscription was (re)made and the copy reloaded
        self._trusted_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_trusted(self) -> None:
        """Wait until the copy is trusted (bound it with ``asyncio.timeout``)."""
        while not self.trusted:
            await self._trusted_event.wait()

    async def aclose(self) -> None:
        self._distrust()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _distrust(self) -> None:
        self.trusted = False
        self._trusted_event.clear()

    def _notified(self, payload: str) -> None:
        if payload.startswith(PROBE):
            if payload == self._probe_payload:
                self._probe_arrived.set()
            return
        self._on_change(payload)

    async def _probe(self) -> None:
        """Return once a payload sent through the ordinary client arrived here."""
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
                    "revocation listener lost (%s); checks read the shared store until it is back",
                    type(exc).__name__,
                )
            self._distrust()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.retry_max)

    async def _session(self) -> None:
        lost = asyncio.Event()

        def gone() -> None:
            self._distrust()
            lost.set()

        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout(self.timeout):
                    subscription = self._subscribe(self._notified, gone)
                    self.connection = await stack.enter_async_context(subscription)
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
            self.connection = None


class ListenedStore:
    """What a store with a listened copy says about it (the SQL and Redis stores)."""

    _listener: RevocationListener | None

    async def wait_until_listening(self) -> bool:
        """Wait until checks answer from the copy (bound it with ``asyncio.timeout``).

        Returns False at once when this store never keeps one (``listen=False``, SQLite).
        """
        if self._listener is None:
            return False
        await self._listener.wait_trusted()
        return True

    @property
    def listening(self) -> bool:
        """True while checks answer from the in-process copy."""
        return self._listener is not None and self._listener.trusted

    @property
    def listener_sessions(self) -> int:
        """How many times the subscription was made and the copy fully reloaded."""
        return 0 if self._listener is None else self._listener.sessions
