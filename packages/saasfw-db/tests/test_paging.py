"""Paging input validation and cursors, including property tests over hostile input."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from saasfw.db import CursorCodec, InvalidQueryError, PagingPolicy, SortKey, uuid7
from saasfw.db._paging import parse_limit, parse_offset, parse_sort

POLICY = PagingPolicy(default_page_size=20, max_page_size=100, max_offset=1000)
ALLOWED = frozenset({"name", "created_at"})
KEY = b"k" * 32


def test_limit_rules() -> None:
    assert parse_limit(None, POLICY) == 20
    assert parse_limit("5", POLICY) == 5
    assert parse_limit(5000, POLICY) == 100  # clamped
    for bad in ("-1", "0", "1.5", " 5", "9" * 11, 2**31, -3, True, "ten"):
        with pytest.raises(InvalidQueryError):
            parse_limit(bad, POLICY)


def test_offset_rules() -> None:
    assert parse_offset(None, POLICY) == 0
    assert parse_offset("1000", POLICY) == 1000
    for bad in ("-1", "1001", "1e3", False):
        with pytest.raises(InvalidQueryError):
            parse_offset(bad, POLICY)


def test_sort_rules_and_tie_break() -> None:
    assert parse_sort(None, ALLOWED, (SortKey("name"),), ("id",)) == (
        SortKey("name"),
        SortKey("id"),
    )
    assert parse_sort("-created_at,name", ALLOWED, (), ("id",)) == (
        SortKey("created_at", descending=True),
        SortKey("name"),
        SortKey("id"),
    )
    for bad in ("id", "name,name", "NAME", "name desc", "--name", "name;", ","):
        with pytest.raises(InvalidQueryError):
            parse_sort(bad, ALLOWED, (), ("id",))


@given(st.one_of(st.text(max_size=40), st.integers(), st.none()))
def test_limit_never_fails_other_than_400(raw: str | int | None) -> None:
    try:
        size = parse_limit(raw, POLICY)
    except InvalidQueryError:
        return
    assert 1 <= size <= POLICY.max_page_size


@given(st.text(max_size=300))
def test_sort_accepts_only_allow_listed_keys(raw: str) -> None:
    try:
        keys = parse_sort(raw, ALLOWED, (), ("id",))
    except InvalidQueryError:
        return
    assert {key.name for key in keys} <= ALLOWED | {"id"}
    assert keys[-1] == SortKey("id")


SORT = (SortKey("created_at", descending=True), SortKey("id"))
VALUES = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=50),
    st.uuids(),
    st.datetimes(timezones=st.just(UTC)),
    st.dates(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)


@given(st.lists(VALUES, min_size=2, max_size=2))
def test_cursor_round_trips(values: list[object]) -> None:
    codec = CursorCodec(KEY)
    cursor = codec.encode("t", SORT, values)
    assert list(codec.decode("t", SORT, cursor)) == values


@given(st.text(max_size=300))
def test_random_cursors_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidQueryError):
        CursorCodec(KEY).decode("t", SORT, raw)


@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_any_single_byte_change_is_detected(position: int, replacement: int) -> None:
    codec = CursorCodec(KEY)
    cursor = codec.encode("t", SORT, [datetime(2026, 1, 1, tzinfo=UTC), uuid.UUID(int=7)])
    index = position % len(cursor)
    tampered = cursor[:index] + chr(replacement) + cursor[index + 1 :]
    if tampered == cursor:
        return
    try:
        decoded = codec.decode("t", SORT, tampered)
    except InvalidQueryError:
        return
    # base64 padding bits can absorb a change without altering the bytes: still the same.
    assert decoded == codec.decode("t", SORT, cursor)


def test_cursor_is_bound_to_key_scope_and_sort() -> None:
    cursor = CursorCodec(KEY).encode("t", SORT, [date(2026, 1, 1), Decimal("1.5")])
    with pytest.raises(InvalidQueryError):
        CursorCodec(b"x" * 32).decode("t", SORT, cursor)
    with pytest.raises(InvalidQueryError):
        CursorCodec(KEY).decode("other_table", SORT, cursor)
    with pytest.raises(InvalidQueryError):
        CursorCodec(KEY).decode("t", (SortKey("id"),), cursor)
    assert "k" * 32 not in repr(CursorCodec(KEY))
    with pytest.raises(ValueError, match="16 bytes"):
        CursorCodec(b"short")


def test_uuid7_is_version_7_and_increasing() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert all(value.version == 7 and value.variant == uuid.RFC_4122 for value in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
