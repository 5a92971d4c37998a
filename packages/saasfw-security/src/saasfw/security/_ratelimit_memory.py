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
from math import floor

from limits.aio.storage import MovingWindowSupport, SlidingWindowCounterSupport, Storage

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
        self._entries: dict[str, _Counter | _Events] = {}

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ()

    def __len__(self) -> int:
        return len(self._entries)

    def _insert(self, key: str, entry: _Counter | _Events, now: float) -> None:
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

    def _incr(self, key: str, expiry: float, amount: int, now: float) -> int:
        entry = self._live_counter(key, now)
        if entry is None:
            self._insert(key, _Counter(amount, now + expiry), now)
            return amount
        entry.count += amount
        return entry.count

    # -- fixed window -------------------------------------------------------------------

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._incr(key, expiry, amount, time.time())

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

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        entry = self._entries.get(key)
        if not isinstance(entry, _Events) or entry.stale(now) or entry.times.maxlen != limit:
            entry = _Events(limit, expiry)
            self._insert(key, entry, now)
        times = entry.times
        if len(times) > limit - amount and times[limit - amount] > now - expiry:
            return False
        times.extendleft([now] * amount)
        return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        now = time.time()
        entry = self._entries.get(key)
        if not isinstance(entry, _Events):
            return now, 0
        count = 0
        for stamp in entry.times:
            if stamp <= now - expiry:
                break
            count += 1
        return (entry.times[count - 1], count) if count else (now, 0)

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

    async def acquire_sliding_window_entry(
        self, key: str, limit: int, expiry: int, amount: int = 1
    ) -> bool:
        if amount > limit:
            return False
        now = time.time()
        previous_count, previous_ttl, current_count, _, current_key = self._sliding(
            key, expiry, now
        )
        if floor(previous_count * previous_ttl / expiry + current_count) + amount > limit:
            return False
        # The counter must outlive its own window to serve as the next one's "previous".
        self._incr(current_key, 2 * expiry, amount, now)
        return True

    async def get_sliding_window(self, key: str, expiry: int) -> tuple[int, float, int, float]:
        previous_count, previous_ttl, current_count, current_ttl, _ = self._sliding(
            key, expiry, time.time()
        )
        return previous_count, previous_ttl, current_count, current_ttl

    async def clear_sliding_window(self, key: str, expiry: int) -> None:
        window = int(time.time() / expiry)
        self._entries.pop(f"{key}/{window}", None)
        self._entries.pop(f"{key}/{window - 1}", None)
