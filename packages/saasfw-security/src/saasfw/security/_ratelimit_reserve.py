"""Permits reserved from the shared storage in small batches and spent in this process.

A Redis or PostgreSQL limit costs a round trip per request, the largest share of a
fleet replica's work per request. A reservation counts several requests at once against
the shared window (one hit of ``size x cost``) and admits the next ``size - 1`` requests of
the same key here, without a round trip. The rules, chosen so a reservation can only make
the limiter stricter, never looser:

- Every admitted request was counted in the shared storage before it was admitted, by at
  most ``reserve_for`` seconds (a permit not spent by then is dropped): the fleet never
  admits more than the limit, give or take what the limit's own window approximation
  allows for a request arriving that much earlier.
- Permits left unspent are counted and lost, so a key may be refused slightly before its
  limit: at most ``size - 1`` per replica, and ``size`` is capped at 1/64 of the smallest
  limit, so the shortfall stays under replicas/64 of the limit (a limit under 128 per
  window is never reserved, it stays exact).
- The size starts at 1 and doubles with each granted reservation, up to ``reserve``; a
  refused reservation is retried at once as a single, exact hit, and sizing starts over.
- ``sensitive`` policies (login, refresh) and checks whose figures are read (RateLimit
  headers) are never reserved: they stay exact, a round trip each.
- One reservation per key is in flight at a time: concurrent requests of that key wait for
  it and take its permits (:meth:`Reservations.wait`) rather than each making a round trip
  of its own, which would undo the saving exactly when a key is busy. The next reservation
  is sized for the requests waiting (within the caps), so a burst of N requests on one
  connection pool waits for about two round trips, not N / size.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from saasfw.security._ratelimit_policy import CompiledPolicy, RateLimitDecision

__all__ = ["Reservations"]

_MAX_LEASES = 10_000  # keys with unspent permits; cleared when reached (permits lost only)

Count = Callable[..., Awaitable[RateLimitDecision]]


class Reservations:
    """The unspent permits of this process, per policy and key.

    Args:
        most: the largest reservation (permits per round trip); 1 switches reserving off.
        lifetime: seconds a reserved permit may wait to be spent.
    """

    def __init__(self, most: int, lifetime: float) -> None:
        self.most = most
        self.lifetime = lifetime
        # (policy, identifiers) -> [spend-by, permits left, next size, exact-until] (monotonic)
        self._leases: dict[tuple[int, tuple[str, ...]], list[Any]] = {}
        self._caps: dict[int, int] = {}
        self._inflight: dict[tuple[int, tuple[str, ...]], asyncio.Future[None]] = {}
        self._waiting: dict[tuple[int, tuple[str, ...]], int] = {}

    def cap(self, compiled: CompiledPolicy) -> int:
        """The largest reservation for ``compiled`` (1: always an exact hit)."""
        cap = self._caps.get(id(compiled))
        if cap is None:
            if compiled.policy.sensitive:
                cap = 1
            else:
                smallest = min(item.amount for item in compiled.items)
                cap = max(1, min(self.most, smallest // 64))
            cap = self._caps[id(compiled)] = cap
        return cap

    def spend(self, compiled: CompiledPolicy, identifiers: Sequence[str]) -> bool:
        """Admit one request from a reserved permit, if one is left and still fresh."""
        lease = self._leases.get((id(compiled), tuple(identifiers)))
        if lease is None or lease[1] <= 0:
            return False
        if time.monotonic() >= lease[0]:
            lease[1] = 0
            return False
        lease[1] -= 1
        return True

    async def wait(self, compiled: CompiledPolicy, identifiers: Sequence[str]) -> bool:
        """Wait for the key's reservations in flight; True once one left a permit for us.

        False when none is in flight (the caller makes the round trip itself).
        """
        key = (id(compiled), tuple(identifiers))
        while (pending := self._inflight.get(key)) is not None:
            self._waiting[key] = self._waiting.get(key, 0) + 1
            try:
                await asyncio.shield(pending)  # a cancelled waiter must not cancel the others
            finally:
                left = self._waiting[key] - 1
                if left:
                    self._waiting[key] = left
                else:
                    del self._waiting[key]
            if self.spend(compiled, identifiers):
                return True
        return False

    async def reserve(
        self,
        count: Count,
        compiled: CompiledPolicy,
        identifiers: Sequence[str],
        figures: bool,
    ) -> RateLimitDecision:
        """Hit the storage for this request and, when the key is busy, for the next few."""
        key = (id(compiled), tuple(identifiers))
        done = self._inflight[key] = asyncio.get_running_loop().create_future()
        try:
            return await self._reserve(key, count, compiled, identifiers, figures)
        finally:
            if self._inflight.get(key) is done:
                del self._inflight[key]
            done.set_result(None)

    async def _reserve(
        self,
        key: tuple[int, tuple[str, ...]],
        count: Count,
        compiled: CompiledPolicy,
        identifiers: Sequence[str],
        figures: bool,
    ) -> RateLimitDecision:
        lease = self._leases.get(key)
        size = lease[2] if lease is not None else 1
        # Grown, or a burst is waiting: size it for them; not right after a refusal, when
        # the window is nearly spent and a large reservation would only be refused again.
        if (size > 1 or key in self._waiting) and (lease is None or lease[3] <= time.monotonic()):
            size = min(self.cap(compiled), max(size, self._waiting.get(key, 0) + 1))
        cost = compiled.policy.cost
        if size > 1:
            decision = await count(compiled, identifiers, figures, cost=size * cost)
            if decision.allowed:
                self._granted(key, size, min(self.cap(compiled), size * 2))
                return decision
        decision = await count(compiled, identifiers, figures)  # exact, as without reserving
        if decision.allowed:
            self._granted(key, 1, min(self.cap(compiled), 2) if size == 1 else 1)
        else:
            self._granted(key, 1, 1)  # no permit left, and exact for a while
            self._leases[key][3] = time.monotonic() + self.lifetime
        return decision

    def _granted(self, key: tuple[int, tuple[str, ...]], size: int, grow_to: int) -> None:
        if key not in self._leases and len(self._leases) >= _MAX_LEASES:
            self._leases.clear()
        self._leases[key] = [time.monotonic() + self.lifetime, size - 1, grow_to, 0.0]
