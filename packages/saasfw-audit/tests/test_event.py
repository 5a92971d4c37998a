"""Event ids, timestamps, and the encoding's guarantee of one line per record."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saasfw.audit import Actor, AuditEvent, AuditLogger, FileSink, verify_log
from saasfw.audit._event import event_id, format_ts


def test_event_id_is_a_time_ordered_uuid7() -> None:
    ids = [event_id(1_700_000_000_000_000_000 + i * 1000, i) for i in range(100)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 100
    u = uuid.UUID(ids[0])
    assert u.version == 7
    assert u.variant == uuid.RFC_4122
    assert int(u.hex[:12], 16) == 1_700_000_000_000


def _reference_event_id(ts_ns: int, seq: int) -> str:
    """The id as first specified, formatted from scratch on every call."""
    from saasfw.audit._event import _ID_SUFFIX_PREFIX

    ms, sub = divmod(ts_ns, 1_000_000)
    return (
        f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7{sub * 4096 // 1_000_000:03x}"
        f"{_ID_SUFFIX_PREFIX}{seq & 0xFFFFFFFFFF:010x}"
    )


@given(
    ts=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=20),
    seq=st.integers(0, 2**64),
    step=st.integers(0, 3_000_000),
)
def test_event_id_with_its_per_millisecond_cache_matches_the_formula(
    ts: list[int], seq: int, step: int
) -> None:
    # Runs of ids in the same millisecond and across milliseconds, cache hits and misses.
    for t in ts:
        for k in range(3):
            assert event_id(t + k * step, seq + k) == _reference_event_id(t + k * step, seq + k)


def test_timestamp_is_rfc3339_utc_with_microseconds() -> None:
    assert format_ts(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456Z"


text = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    actor_id=text,
    details=st.dictionaries(
        text, st.one_of(text, st.integers(), st.booleans(), st.none()), max_size=5
    ),
)
def test_any_field_content_gives_one_line_that_round_trips_and_verifies(
    actor_id: str, details: dict[str, object]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "a.jsonl"
        logger = AuditLogger([FileSink(log, fsync=False)], producer_id="h", chain_key=b"k" * 32)
        logger.start()
        logger.record("t.x", actor=Actor(actor_id), details=details)
        assert logger.close().complete
        data = log.read_bytes()
        assert data.count(b"\n") == 1
        assert data.isascii()
        event = AuditEvent.from_record(json.loads(data))
        assert event.actor is not None
        assert event.actor.id == actor_id
        assert dict(event.details) == details
        assert verify_log(log, chain_key=b"k" * 32).ok
