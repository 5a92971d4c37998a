"""The pipeline's batch encoding produces exactly the bytes of the per-event encoding it
replaced (``_pipeline_reference``): envelopes, canonical record, chain MAC and line."""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saasfw.audit import Actor, AuditLogger, FieldCipher, Keyring, Resource, SubjectKeyStore
from saasfw.audit._chain import GENESIS
from saasfw.audit._event import event_id
from saasfw.audit._record import PendingRecord

from ._pipeline_reference import reference_lines
from .test_logger import GatedSink

_ENCRYPTED = ("email", "ssn")

_text = st.text(max_size=12)
_maybe_text = st.none() | _text
_json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | _text
_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=6,
)
_details = st.none() | st.dictionaries(
    st.sampled_from([*_ENCRYPTED, "changed", "n", "note"]) | _text, _json, max_size=5
)
_actor = st.none() | st.builds(Actor, _text, _text, _maybe_text, _maybe_text)
_resource = st.none() | st.builds(Resource, _text, _maybe_text)
_trace = st.none() | st.tuples(_text, _text)
# Mostly the ordinary types; sometimes a non-string where a string belongs (generic path).
_type = st.sampled_from(["user.profile.updated", "auth.login", "x"]) | _text | st.integers()
_event = st.tuples(
    st.integers(0, 2**62),
    _type,
    _maybe_text,
    _text | st.integers(),
    _actor,
    _resource,
    _maybe_text,
    _trace,
    _details,
    st.none() | st.sampled_from(["alice", "bob"]),
)


def _records(items: list[tuple[Any, ...]]) -> list[PendingRecord]:
    return [PendingRecord(*it) for it in items]


def _items(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [
        (ts, event_id(ts, i), typ, action, outcome, actor, resource, corr, trace, det, subj, None)
        for i, (ts, typ, action, outcome, actor, resource, corr, trace, det, subj) in enumerate(
            events, start=1
        )
    ]


def _deterministic_urandom(n: int) -> bytes:
    return hashlib.shake_256(b"nonces").digest(n)


@pytest.mark.parametrize("chained", [True, False])
@pytest.mark.parametrize("mode", ["keyring", "subjects", "plain"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(_event, max_size=12), shared_actor=st.booleans())
def test_batch_encoding_matches_the_per_event_reference(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chained: bool,
    mode: str,
    events: list[tuple[Any, ...]],
    shared_actor: bool,
) -> None:
    monkeypatch.setattr(os, "urandom", _deterministic_urandom)
    keyring = Keyring({"k1": bytes(range(32))}, "k1")
    cipher = None
    if mode == "keyring":
        cipher = FieldCipher(keyring)
    elif mode == "subjects":
        cipher = FieldCipher(keyring, SubjectKeyStore(tmp_path / "subjects.json", keyring))
    chain_key = bytes(range(1, 33)) if chained else None
    logger = AuditLogger(
        [GatedSink()],
        producer_id="p\u00e9-1",
        chain_key=chain_key,
        cipher=cipher,
        encrypted_fields=_ENCRYPTED if cipher is not None else (),
    )
    items = _items(events)
    if shared_actor:  # the same Actor object across events exercises the actor cache
        actor = Actor("a", tenant="t")
        items = [(*it[:5], actor, *it[6:]) for it in items]
    pipeline = logger._pipeline
    seq0 = pipeline.encoder.seq
    batch = pipeline.process(_records(copy.deepcopy(items)))
    expected = reference_lines(
        copy.deepcopy(items),
        producer=logger.producer_id,
        seq=seq0,
        prev=GENESIS,
        chain_key=chain_key,
        cipher=cipher,
        encrypted=_ENCRYPTED if cipher is not None else (),
    )
    assert [r.line for r in batch.records] == expected
    assert [r.seq for r in batch.records] == list(range(seq0 + 1, seq0 + 1 + len(items)))
    assert pipeline.encoder.seq == seq0 + len(items)
    head = pipeline.encoder.head.hex()
    if chained and items:
        assert batch.records[-1].mac == head
        assert expected[-1].endswith(b'"' + head.encode() + b'"}\n')
