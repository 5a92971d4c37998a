"""The SQL store's in-process revocation copy: order-independent, exact, bounded.

The listener reloads the tables while notifications keep arriving, so the same changes can
reach the copy in any order and more than once. These properties show the result never
depends on that order, that the copy answers like a plain reading of the live rows, and
that anything not written by the store is ignored rather than trusted.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from saasfw.security._revocation_cache import (
    RevocationCache,
    digest,
    format_change,
    parse_change,
)

NOW = 1_000_000.0

changes = st.lists(
    st.tuples(
        st.sampled_from(["jti", "fam", "nbf"]),
        st.sampled_from(["k1", "k2", "k3"]),
        st.floats(NOW - 100, NOW + 100),  # expiry: some already dead
        st.floats(NOW - 100, NOW + 100),  # not-before
    ),
    max_size=30,
)


def _state(cache: RevocationCache) -> tuple[object, ...]:
    return (cache.tokens, cache.families, cache.not_before)


@settings(max_examples=300, deadline=None)
@given(changes, st.randoms(use_true_random=False))
def test_any_order_and_any_repetition_gives_the_same_copy(
    applied: list[tuple[str, str, float, float]], rnd: random.Random
) -> None:
    in_order, shuffled = RevocationCache(), RevocationCache()
    for change in applied:
        in_order.apply(*change, now=NOW)
    replay = applied + rnd.sample(applied, k=len(applied) // 2)  # reload overlapping NOTIFYs
    rnd.shuffle(replay)
    for change in replay:
        shuffled.apply(*change, now=NOW)
    assert _state(in_order) == _state(shuffled)


@settings(max_examples=300, deadline=None)
@given(changes, st.sampled_from(["k1", "k2", "k3", "k4"]), st.floats(NOW - 200, NOW + 200))
def test_answers_match_a_plain_reading_of_the_live_rows(
    applied: list[tuple[str, str, float, float]], key: str, issued_at: float
) -> None:
    cache = RevocationCache()
    for change in applied:
        cache.apply(*change, now=NOW)
    live = [c for c in applied if c[2] > NOW]
    jti = any(kind == "jti" and k == key for kind, k, _, _ in live)
    fam = any(kind == "fam" and k == key for kind, k, _, _ in live)
    cuts = [nbf for kind, k, exp, nbf in applied if kind == "nbf" and k == key]
    latest_expiry = max(
        (exp for kind, k, exp, _ in applied if kind == "nbf" and k == key), default=None
    )
    nbf_refuses = latest_expiry is not None and latest_expiry > NOW and issued_at < max(cuts)
    assert cache.is_revoked(key, None, "other", issued_at, NOW) is jti
    assert cache.is_revoked(None, key, "other", issued_at, NOW) is fam
    assert cache.is_revoked(None, None, key, issued_at, NOW) is nbf_refuses


@given(st.text(max_size=200))
def test_only_the_stores_own_payloads_are_accepted(payload: str) -> None:
    parsed = parse_change(payload)
    if parsed is not None:
        assert parsed[0] in {"jti", "fam", "nbf"}
    key = digest(payload)  # any text, even lone surrogates and NULs, digests to 40 hex chars
    assert len(key) == 40
    assert parse_change(format_change("fam", key, 12.5, 0.0)) == ("fam", key, 12.5, 0.0)


def test_purge_drops_dead_entries_and_bounds_the_copy() -> None:
    cache = RevocationCache(purge_every=10)
    for i in range(10):
        cache.apply("jti", f"dead{i}", NOW - 1, 0.0, NOW)
    assert len(cache) == 0  # the 10th apply purged all ten
    cache.apply("jti", "live", NOW + 1, 0.0, NOW)
    assert len(cache) == 1
