"""The bounded memory storage: exact counting with the limits strategies, bounded, expiring."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from limits import parse, parse_many
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)

from saasfw.security import _ratelimit, _ratelimit_memory
from saasfw.security._ratelimit import RateLimiter, RateLimitPolicy, RateLimitSettings
from saasfw.security._ratelimit_memory import BoundedMemoryStorage

Strategy = type[FixedWindowRateLimiter | MovingWindowRateLimiter | SlidingWindowCounterRateLimiter]
ALL: tuple[Strategy, ...] = (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)


class Clock:
    def __init__(self, now: float = 1_000_020.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(_ratelimit_memory, "time", SimpleNamespace(time=fake.time))
    return fake


@pytest.mark.parametrize("strategy", ALL)
async def test_exact_under_concurrency(strategy: Strategy) -> None:
    limiter = strategy(BoundedMemoryStorage())
    item = parse("5/minute")
    results = await asyncio.gather(*(limiter.hit(item, "k") for _ in range(200)))
    assert sum(results) == 5


@pytest.mark.parametrize("strategy", ALL)
async def test_windows_expire(strategy: Strategy, clock: Clock) -> None:
    limiter = strategy(BoundedMemoryStorage())
    item = parse("2/minute")
    assert [await limiter.hit(item, "k") for _ in range(3)] == [True, True, False]
    clock.now += 121  # past the window and, for the sliding counter, the previous one
    assert await limiter.hit(item, "k")


async def test_moving_window_frees_one_slot_at_a_time(clock: Clock) -> None:
    limiter = MovingWindowRateLimiter(BoundedMemoryStorage())
    item = parse("2/minute")
    assert await limiter.hit(item, "k")
    clock.now += 30
    assert await limiter.hit(item, "k")
    assert not await limiter.hit(item, "k")
    clock.now += 31  # the first hit left the window, the second did not
    assert await limiter.hit(item, "k")
    assert not await limiter.hit(item, "k")
    start, count = await limiter.storage.get_moving_window(item.key_for("k"), 2, 60)  # type: ignore[attr-defined]
    assert count == 2
    assert start == pytest.approx(clock.now - 31)


async def test_sliding_window_weights_the_previous_window(clock: Clock) -> None:
    clock.now = 6_000_000.0  # the start of a 60 s window
    limiter = SlidingWindowCounterRateLimiter(BoundedMemoryStorage())
    item = parse("10/minute")
    assert sum([await limiter.hit(item, "k") for _ in range(10)]) == 10
    clock.now += 90  # half-way through the next window: the previous counts half
    allowed = sum([await limiter.hit(item, "k") for _ in range(10)])
    assert allowed == 5


async def test_key_count_is_bounded_and_live_evictions_are_counted(clock: Clock) -> None:
    storage = BoundedMemoryStorage(max_keys=100)
    limiter = FixedWindowRateLimiter(storage)
    item = parse("1/minute")
    for n in range(1_000):
        await limiter.hit(item, f"client-{n}")
    assert len(storage) == 100
    assert storage.evictions == 900


async def test_expired_windows_are_reclaimed_without_counting_evictions(clock: Clock) -> None:
    storage = BoundedMemoryStorage(max_keys=50)
    limiter = FixedWindowRateLimiter(storage)
    item = parse("1/second")
    for n in range(5_000):
        if n % 10 == 0:
            clock.now += 2
        await limiter.hit(item, f"client-{n}")
    # Old windows are reclaimed as new ones arrive, so the dict follows the live set.
    assert len(storage) <= 50
    assert storage.evictions == 0


async def test_storage_interface_details(clock: Clock) -> None:
    storage = BoundedMemoryStorage()
    assert await storage.incr("a", 10) == 1
    assert await storage.incr("a", 10, amount=3) == 4
    assert await storage.decr("a", 10) == 0
    assert await storage.decr("missing") == 0
    assert await storage.get_expiry("a") == clock.now + 10
    assert await storage.get_expiry("missing") == clock.now
    await storage.clear("a")
    assert await storage.get("a") == 0
    assert await storage.check()
    await storage.incr("b", 10)
    assert await storage.reset() == 1
    assert not await storage.acquire_entry("m", 2, 60, amount=3)
    assert not await storage.acquire_sliding_window_entry("s", 2, 60, amount=3)
    assert await storage.acquire_sliding_window_entry("s", 2, 60)
    await storage.clear_sliding_window("s", 60)
    # The clock sits on a window boundary: the current window has all of itself plus the
    # next window (as "previous") to live.
    assert await storage.get_sliding_window("s", 60) == (0, 0.0, 0, 120.0)
    assert await storage.get_moving_window("none", 2, 60) == (clock.now, 0)
    with pytest.raises(ValueError, match="max_keys"):
        BoundedMemoryStorage(max_keys=0)


@settings(max_examples=60, deadline=None)
@given(
    strategy=st.sampled_from(["fixed-window", "moving-window", "sliding-window-counter"]),
    limit=st.sampled_from(["3/second", "5/minute", "2/minute;4/hour"]),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=45), st.integers(1, 2), st.booleans()),
        max_size=40,
    ),
)
def test_fast_path_decides_exactly_like_the_limits_strategies(
    strategy: str, limit: str, steps: list[tuple[float, int, bool]]
) -> None:
    """The limiter's synchronous path (``hit_now``) against ``limits``' own strategies over
    the same storage class: same decisions, same remaining counts, at every step."""
    fake = Clock(6_000_000.5)
    # Hypothesis runs many examples per test, so the function-scoped monkeypatch fixture
    # cannot be used; a local MonkeyPatch undoes itself the same way.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_ratelimit_memory, "time", SimpleNamespace(time=fake.time))
        asyncio.run(_compare(strategy, limit, steps, fake))


async def _compare(
    strategy: str, limit: str, steps: list[tuple[float, int, bool]], clock: Clock
) -> None:
    kinds: dict[str, Strategy] = {
        "fixed-window": FixedWindowRateLimiter,
        "moving-window": MovingWindowRateLimiter,
        "sliding-window-counter": SlidingWindowCounterRateLimiter,
    }
    reference = kinds[strategy](BoundedMemoryStorage())
    fast = BoundedMemoryStorage()
    items = parse_many(limit)
    for advance, cost, other_client in steps:
        clock.now += advance
        client = "b" if other_client else "a"
        for item in items:
            key = item.key_for(client)
            expected = await reference.hit(item, client, cost=cost)
            _, expected_remaining = await reference.get_window_stats(item, client)
            allowed, remaining, _ = fast.hit_now(
                strategy, key, item.amount, item.get_expiry(), cost
            )
            assert allowed == expected
            assert remaining == max(0, expected_remaining)


@settings(max_examples=60, deadline=None)
@given(
    limit=st.sampled_from(["3/second", "5/minute", "2/minute;4/hour", "4/hour;2/minute"]),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=45), st.integers(1, 2), st.booleans()),
        max_size=40,
    ),
)
def test_limiter_without_figures_admits_and_refuses_exactly_as_with_them(
    limit: str, steps: list[tuple[float, int, bool]]
) -> None:
    """The middleware's shortcut (``check_nowait(figures=False)``: a request far from its
    limits is counted without computing header figures) against the full computation:
    the same decisions, refusals with the same figures, no limit counted twice."""
    fake = Clock(6_000_000.5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_ratelimit_memory, "time", SimpleNamespace(time=fake.time))
        full, short = (
            RateLimiter(RateLimitSettings(strategy="sliding-window-counter")) for _ in range(2)
        )
        policies = {cost: RateLimitPolicy(name="p", limits=limit, cost=cost) for cost in (1, 2)}
        for advance, cost, other_client in steps:
            fake.now += advance
            scope = {"client": ("10.0.0.2" if other_client else "10.0.0.1", 1), "headers": []}
            expected = full.check_nowait(policies[cost], scope)
            got = short.check_nowait(policies[cost], scope, figures=False)
            assert expected is not None
            assert got is not None
            assert got.allowed == expected.allowed
            if not expected.allowed:
                assert got == expected
        assert short.checks == full.checks == len(steps)
        assert short.refusals == full.refusals


def test_limiter_key_cache_is_bounded_and_keeps_clients_apart() -> None:
    limiter = RateLimiter(RateLimitSettings())
    policy = RateLimitPolicy(name="p", limits="1/minute")
    for n in range(_ratelimit._ADDRESS_BASES_MAX + 10):
        address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        first = limiter.check_nowait(policy, {"client": (address, 1)}, figures=False)
        assert first is not None
        assert first.allowed
    assert len(limiter._compiled[id(policy)].address_bases) <= _ratelimit._ADDRESS_BASES_MAX
    again = limiter.check_nowait(policy, {"client": ("10.0.0.1", 1)}, figures=False)
    assert again is not None
    assert not again.allowed
    assert again.retry_after >= 1
