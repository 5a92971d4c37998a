"""A bounded, expiring in-process storage for the ``limits`` async strategies.

``limits``' own memory storage has no bound on the number of keys and schedules a sweep task
on every hit. Keys here derive from client addresses, so an attacker rotating addresses
could grow it without limit. This storage caps the number of keys, reclaims expired windows
as new ones arrive, and counts every live window it had to evict (the metric tells an
operator the cap is too low). It implements the same storage interface, so the fixed-window,
moving-window and sliding-window-counter strategies of ``limits`` run on it unchanged.

No method awaits between reading and writing a window, so a check-and-increment is atomic
within the event loop without locks.
"""

from __future__ import annotations

import time
from collections import deque
from math import ceil, floor, inf

from limits.aio.storage import MovingWindowSupport, SlidingWindowCounterSupport, Storage

from saasfw.security._errors import ConfigurationError
from saasfw.security._ratelimit_policy import CompiledPolicy, RateLimitDecision

__all__ = ["BoundedMemoryStorage"]

# How many stale entries to reclaim from the oldest end per new key: amortised O(1), and
# enough that the dict tracks the live set instead of the all-time set.
_RECLAIM_PER_INSERT = 4


class _Counter:
    __slots__ = ("count", "expires_at")

    def __init__(self, count: int, expires_at: float) -> None:
        self.count = count
        self.expires_at = expires_at

    def stale(self, now: float) -> bool:
        return self.expires_at <= now


class _Sliding:
    """One key's sliding-window counter for the limiter's fast path: the counts of the
    current and the previous window in one entry, so a hit is one dictionary lookup."""

    __slots__ = ("current", "expires_at", "previous", "window")

    def __init__(self, window: int, expiry: int) -> None:
        self.window = window
        self.current = 0
        self.previous = 0
        # Both counts are meaningless once the window after the current one has ended.
        self.expires_at = float((window + 2) * expiry)

    def stale(self, now: float) -> bool:
        return self.expires_at <= now


class _Events:
    """Acquisition timestamps of a moving window, newest first, at most ``limit`` long."""

    __slots__ = ("expiry", "times")

    def __init__(self, limit: int, expiry: int) -> None:
        self.times: deque[float] = deque(maxlen=max(limit, 1))
        self.expiry = expiry

    def stale(self, now: float) -> bool:
        return not self.times or self.times[0] + self.expiry <= now


class BoundedMemoryStorage(Storage, MovingWindowSupport, SlidingWindowCounterSupport):
    """In-process rate-limit storage holding at most ``max_keys`` windows.

    Args:
        max_keys: hard cap on stored windows. When it is reached the oldest window is
            dropped (expired ones first) and, if it was still live, counted in
            :attr:`evictions`.
    """

    STORAGE_SCHEME = None

    def __init__(self, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        super().__init__(None)
        self.max_keys = max_keys
        self.evictions = 0
        self._entries: dict[str, _Counter | _Events | _Sliding] = {}

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ()

    def __len__(self) -> int:
        return len(self._entries)

    def _insert(self, key: str, entry: _Counter | _Events | _Sliding, now: float) -> None:
        entries = self._entries
        entries.pop(key, None)
        for _ in range(_RECLAIM_PER_INSERT):
            if not entries:
                break
            oldest = next(iter(entries))
            if not entries[oldest].stale(now):
                break
            del entries[oldest]
        while len(entries) >= self.max_keys:
            oldest = next(iter(entries))
            if not entries.pop(oldest).stale(now):
                self.evictions += 1
        entries[key] = entry

    def _live_counter(self, key: str, now: float) -> _Counter | None:
        entry = self._entries.get(key)
        if isinstance(entry, _Counter) and not entry.stale(now):
            return entry
        return None

    def _incr(self, key: str, expiry: float, amount: int, now: float) -> _Counter:
        entry = self._live_counter(key, now)
        if entry is None:
            entry = _Counter(amount, now + expiry)
            self._insert(key, entry, now)
        else:
            entry.count += amount
        return entry

    # -- fixed window -------------------------------------------------------------------

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._incr(key, expiry, amount, time.time()).count

    async def decr(self, key: str, amount: int = 1) -> int:
        entry = self._live_counter(key, time.time())
        if entry is None:
            return 0
        entry.count = max(entry.count - amount, 0)
        return entry.count

    async def get(self, key: str) -> int:
        entry = self._live_counter(key, time.time())
        return 0 if entry is None else entry.count

    async def get_expiry(self, key: str) -> float:
        now = time.time()
        entry = self._live_counter(key, now)
        return now if entry is None else entry.expires_at

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        count = len(self._entries)
        self._entries.clear()
        return count

    async def clear(self, key: str) -> None:
        self._entries.pop(key, None)

    # -- moving window ------------------------------------------------------------------

    def _acquire(self, key: str, limit: int, expiry: int, amount: int, now: float) -> bool:
        if amount > limit:
            return False
        entry = self._entries.get(key)
        if not isinstance(entry, _Events) or entry.stale(now) or entry.times.maxlen != limit:
            entry = _Events(limit, expiry)
            self._insert(key, entry, now)
        times = entry.times
        if len(times) > limit - amount and times[limit - amount] > now - expiry:
            return False
        times.extendleft([now] * amount)
        return True

    def _moving(self, key: str, expiry: int, now: float) -> tuple[float, int]:
        entry = self._entries.get(key)
        if not isinstance(entry, _Events) or not entry.times:
            return now, 0
        # Newest first: binary search for the first stamp that left the window.
        times, cutoff = entry.times, now - expiry
        low, high = 0, len(times)
        while low < high:
            middle = (low + high) // 2
            if times[middle] > cutoff:
                low = middle + 1
            else:
                high = middle
        return (times[low - 1], low) if low else (now, 0)

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return self._acquire(key, limit, expiry, amount, time.time())

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        return self._moving(key, expiry, time.time())

    # -- sliding window counter -----------------------------------------------------------

    def _sliding(self, key: str, expiry: int, now: float) -> tuple[int, float, int, float, str]:
        window = int(now / expiry)
        current_key = f"{key}/{window}"
        previous = self._live_counter(f"{key}/{window - 1}", now)
        current = self._live_counter(current_key, now)
        previous_count = 0 if previous is None else previous.count
        previous_ttl = 0.0 if previous_count == 0 else (1 - ((now / expiry) % 1)) * expiry
        current_ttl = (1 - ((now / expiry) % 1)) * expiry + expiry
        current_count = 0 if current is None else current.count
        return previous_count, previous_ttl, current_count, current_ttl, current_key

    def _acquire_sliding(self, key: str, limit: int, expiry: int, amount: int, now: float) -> bool:
        if amount > limit:
            return False
        previous_count, previous_ttl, current_count, _, current_key = self._sliding(
            key, expiry, now
        )
        if floor(previous_count * previous_ttl / expiry + current_count) + amount > limit:
            return False
        # The counter must outlive its own window to serve as the next one's "previous".
        self._incr(current_key, 2 * expiry, amount, now)
        return True

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        return self._acquire_sliding(key, limit, expiry, amount, time.time())

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        previous_count, previous_ttl, current_count, current_ttl, _ = self._sliding(
            key, expiry, time.time()
        )
        return previous_count, previous_ttl, current_count, current_ttl

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        window = int(time.time() / expiry)
        self._entries.pop(f"{key}/{window}", None)
        self._entries.pop(f"{key}/{window - 1}", None)

    # -- the limiter's fast path ------------------------------------------------------------

    def admit_now(self, key: str, limit: int, expiry: int, cost: int) -> bool:
        """Sliding-window-counter shortcut: count the hit and return True when the request
        is certainly within the limit (the current and previous windows' counts together
        leave room: the weighted count can only be lower); otherwise count nothing and
        return False, and the caller uses :meth:`hit_now`. No figures for headers."""
        slot = self._entries.get(key)
        if (
            isinstance(slot, _Sliding)
            and slot.window == int(time.time() / expiry)
            and slot.previous + slot.current + cost <= limit
        ):
            slot.current += cost
            return True
        return False

    def hit_now(
        self, strategy: str, key: str, limit: int, expiry: int, cost: int
    ) -> tuple[bool, int, int]:
        """Hit and report in one synchronous step: ``(allowed, remaining, reset_after)``,
        the last in whole seconds.

        The same arithmetic as the ``limits`` strategies' ``hit`` plus ``get_window_stats``
        over this storage, without their per-call coroutines and key building; memory needs
        no I/O, so the limiter calls this directly. Kept flat: it runs on every request.
        """
        now = time.time()
        if strategy == "sliding-window-counter":
            # The entries here are _Sliding, keyed by ``key`` alone (not the ``limits``
            # storage interface's ``key/window`` counters): one lookup per hit.
            scaled = now / expiry
            window = int(scaled)
            found = self._entries.get(key)
            slot = found if isinstance(found, _Sliding) else None
            previous_count = current_count = 0
            if slot is not None:
                if slot.window == window:
                    previous_count, current_count = slot.previous, slot.current
                elif slot.window == window - 1:
                    previous_count = slot.current
            elapsed = scaled - window
            previous_ttl = (1 - elapsed) * expiry if previous_count else 0.0
            weighted = previous_count * previous_ttl / expiry + current_count
            allowed = cost <= limit and floor(weighted) + cost <= limit
            if allowed:
                if slot is None:
                    slot = _Sliding(window, expiry)
                    self._insert(key, slot, now)
                elif slot.window != window:
                    slot.window = window
                    slot.expires_at = float((window + 2) * expiry)
                slot.previous = previous_count
                current_count += cost
                slot.current = current_count
                weighted += cost
            remaining = max(0, limit - floor(weighted))
            if not (previous_count or current_count):
                return allowed, remaining, 0
            current_ttl = (1 - elapsed) * expiry + expiry
            previous_reset = previous_ttl % (expiry / previous_count) if previous_count else inf
            current_reset = current_ttl % expiry if current_count else inf
            return allowed, remaining, ceil(min(previous_reset, current_reset))
        if strategy == "fixed-window":
            entry = self._incr(key, expiry, cost, now)
            return entry.count <= limit, max(0, limit - entry.count), ceil(entry.expires_at - now)
        allowed = self._acquire(key, limit, expiry, cost, now)
        start, count = self._moving(key, expiry, now)
        return allowed, max(0, limit - count), max(0, ceil(start + expiry - now))


def hit_memory(
    storage: BoundedMemoryStorage,
    strategy: str,
    compiled: CompiledPolicy,
    base: str,
    first: int = 0,
) -> RateLimitDecision:
    """Hit every limit of ``compiled`` from its ``first`` on, in ``storage``; the tightest
    decides (the limiter's memory path, no coroutine)."""
    policy = compiled.policy
    tightest: RateLimitDecision | None = None
    for item, window, suffix in compiled.memory_keys[first:] if first else compiled.memory_keys:
        allowed, remaining, reset_after = storage.hit_now(
            strategy, base + suffix, item.amount, window, policy.cost
        )
        if not allowed:
            return RateLimitDecision(
                False, policy.name, item.amount, window, 0, max(1, reset_after)
            )
        if tightest is None or remaining < tightest.remaining:
            tightest = RateLimitDecision(
                True, policy.name, item.amount, window, remaining, reset_after
            )
    if tightest is None:  # pragma: no cover - a policy always has at least one limit
        raise ConfigurationError(f"rate limit policy {policy.name!r} has no limit")
    return tightest
