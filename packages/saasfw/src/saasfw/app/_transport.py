"""The transport of a downstream client: circuit breaker and bounded retries.

Split from ``_clients`` so that importing ``saasfw.app`` does not import httpx: only a
configured :class:`~saasfw.app.ServiceClient` needs this module.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import httpx

from saasfw.app._breaker import CircuitBreaker
from saasfw.app._settings import ClientSettings

__all__ = ["IDEMPOTENT", "RETRYABLE_STATUS", "ResilientTransport"]

_log = logging.getLogger("saasfw.app.clients")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRYABLE_STATUS = frozenset({502, 503, 504})


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class ResilientTransport(httpx.AsyncBaseTransport):
    """Circuit breaker and bounded retries around another transport."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        settings: ClientSettings,
        breaker: CircuitBreaker,
        *,
        sleep: Any = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.settings = settings
        self.breaker = breaker
        self._sleep = sleep
        self._random = rng or random.SystemRandom()

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        s = self.settings
        ceiling = min(s.backoff_max, s.backoff * (2**attempt))
        delay = self._random.uniform(0, ceiling)  # full jitter
        hinted = _retry_after(response) if response is not None else None
        if hinted is not None:
            delay = min(max(delay, hinted), s.backoff_max)
        return delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempts = 1 + (self.settings.retries if request.method in IDEMPOTENT else 0)
        if attempts > 1:
            await request.aread()  # a body must be re-sendable
        attempt = 0
        while True:
            self.breaker.before_call()
            response: httpx.Response | None = None
            try:
                response = await self.inner.handle_async_request(request)
            except (httpx.TransportError, httpx.TimeoutException):
                self.breaker.record(ok=False)
                if attempt + 1 >= attempts:
                    raise
            else:
                failed = response.status_code in RETRYABLE_STATUS
                self.breaker.record(ok=not failed)
                if not failed or attempt + 1 >= attempts:
                    return response
                await response.aclose()
            delay = self._delay(attempt, response)
            attempt += 1
            _log.info(
                "retrying %s %s (attempt %d of %d) in %.3fs",
                request.method,
                request.url.path,
                attempt + 1,
                attempts,
                delay,
            )
            await self._sleep(delay)

    async def aclose(self) -> None:
        await self.inner.aclose()
