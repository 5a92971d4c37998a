"""The line layout: encode records as chained JSON lines, and read a line's chain link back.

Every sink and the verifier rely on the layout fixed here: one ASCII JSON object per line,
keys in a fixed order, and on a chained line a last member ``"mac"`` holding
``HMAC(chain key, previous mac || the line without its "mac" member)`` in hex. Only this
module knows where the MAC sits in a line; sinks ask :func:`line_mac`, the verifier
:func:`split_chained_line`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any

from saasfw.audit._chain import GENESIS, ChainKey
from saasfw.audit._event import SCHEMA_VERSION, Actor, Resource
from saasfw.audit._record import PendingRecord

MAC_MEMBER = ',"mac":"'
_MAC_MEMBER_B = MAC_MEMBER.encode()
# A chained line ends with ,"mac":"<64 hex>"} (then its newline).
MAC_TAIL_LEN = len(MAC_MEMBER) + 64 + 2

# ASCII-only output: every control character, line separator and non-ASCII character is
# escaped, so no field can break a line. Keys are not sorted: the MAC covers the exact bytes
# written (the verifier never re-serialises), and the record's own keys are built in a
# fixed order.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str).encode
_q: Callable[[str], str] = encode_basestring_ascii


def _qn(value: str | None) -> str:
    return "null" if value is None else _q(value)


def _encode_details(details: dict[str, Any]) -> str:
    # The stdlib's public encoder (its C accelerator when present). Calling the private
    # json.encoder.c_make_encoder directly saved its per-call construction, 0.3 to 1.6 us
    # of the pipeline's ~19 us per event: too little for a private name (README).
    return _ENCODER(details)


def split_chained_line(line: bytes) -> tuple[bytes, str] | None:
    """Split a chained line into its canonical bytes and its mac hex, or None if malformed."""
    body = line.rstrip(b"\n")
    if len(body) < MAC_TAIL_LEN or not body.endswith(b'"}'):
        return None
    tail = body[-MAC_TAIL_LEN:]
    if not tail.startswith(_MAC_MEMBER_B):
        return None
    mac_hex = tail[len(MAC_MEMBER) : len(MAC_MEMBER) + 64].decode("ascii", "replace")
    return body[:-MAC_TAIL_LEN] + b"}", mac_hex


def line_mac(line: bytes) -> str | None:
    """The chain MAC (hex) of a line this module encoded, or None for an unchained line."""
    end = len(line) - 3 if line.endswith(b"\n") else len(line) - 2
    start = end - 64
    if start < len(MAC_MEMBER) or line[start - len(MAC_MEMBER) : start] != _MAC_MEMBER_B:
        return None
    return line[start:end].decode("ascii", "replace")


def _actor_json(actor: Actor) -> str:
    return (
        '{"id":'
        + _q(actor.id)
        + ',"kind":'
        + _q(actor.kind)
        + ',"tenant":'
        + _qn(actor.tenant)
        + ',"address":'
        + _qn(actor.address)
        + "}"
    )


def _resource_json(resource: Resource) -> str:
    rid = resource.id
    return f'{{"type":{_q(resource.type)},"id":{"null" if rid is None else _q(rid)}}}'


class RecordEncoder:
    """Numbers, encodes and chains one producer's records; owns its chain head.

    Used by the pipeline thread only. ``seq`` is the sequence number of the last record
    encoded, ``head`` the MAC it carries (GENESIS before the first record).

    Args:
        producer_id: the producer written in every record.
        chain: the chain key (None: lines carry no MAC).
    """

    def __init__(self, producer_id: str, chain: ChainKey | None) -> None:
        self.producer_id = producer_id
        self.chain = chain
        self.seq = 0
        self.head = GENESIS
        self._producer_json = _q(producer_id)
        self._ts_cache: tuple[int, str] = (-1, "")
        self._actor_cache: dict[int, tuple[Actor, str]] = {}
        self._head_cache: dict[tuple[Any, Any, Any], str] = {}

    @property
    def chained(self) -> bool:
        return self.chain is not None

    def resume(self, seq: int, mac_hex: str | None) -> None:
        """Continue the producer's chain after the stored record ``seq`` carrying ``mac_hex``."""
        self.seq = seq
        self.head = bytes.fromhex(mac_hex) if self.chain is not None and mac_hex else GENESIS

    def encode(self, records: list[PendingRecord]) -> list[bytes]:
        """The records' lines, numbered from ``seq + 1``; advances ``seq`` and ``head``.

        A record that cannot be encoded raises after the records before it were counted:
        the chain always continues from the last line made. The record's JSON is
        assembled from escaped parts, inline, because this loop is the pipeline's whole
        cost; ``_q`` raises TypeError on anything but a string where a string belongs, and
        the generic path then renders such values with ``str``.
        """
        lines: list[bytes] = []
        append = lines.append
        chain_copy = self.chain.hmac_factory() if self.chain is not None else None
        head_cache, actor_cache = self._head_cache, self._actor_cache
        producer_json = self._producer_json
        ts_sec, ts_prefix = self._ts_cache
        seq = self.seq + 1
        prev = self.head
        try:
            for r in records:
                try:
                    typ, action, outcome = r.type, r.action, r.outcome
                    head = head_cache.get((typ, action, outcome))
                    if head is None:
                        head = self._head_json(typ, action, outcome)
                    actor = r.actor
                    if actor is None:
                        actor_json = "null"
                    else:
                        cached = actor_cache.get(id(actor))
                        if cached is not None and cached[0] is actor:
                            actor_json = cached[1]
                        else:
                            actor_json = self._cache_actor(actor)
                    resource = r.resource
                    resource_json = "null" if resource is None else _resource_json(resource)
                    ts = r.ts
                    sec = ts // 1_000_000_000
                    if sec != ts_sec:
                        ts_sec = sec
                        ts_prefix = time.strftime('"ts":"%Y-%m-%dT%H:%M:%S.', time.gmtime(sec))
                    corr, trace, det = r.correlation_id, r.trace, r.details
                    trace_id = trace[0] if trace else None
                    canonical = (
                        f'{{"v":{SCHEMA_VERSION},"id":"{r.id}",'
                        f'{ts_prefix}{ts // 1000 % 1_000_000:06d}Z",'
                        f'{head},"actor":{actor_json},"resource":{resource_json},'
                        f'"correlation_id":{"null" if corr is None else _q(corr)},'
                        f'"trace_id":{"null" if trace_id is None else _q(trace_id)},'
                        f'"producer":{producer_json},"seq":{seq},'
                        f'"details":{_encode_details(det) if det else "{}"}}}'
                    )
                except (TypeError, ValueError, AttributeError, RecursionError):
                    canonical = self._generic(r, seq)
                body = canonical.encode()
                if chain_copy is not None:
                    h = chain_copy()
                    h.update(prev + body)
                    prev = h.finalize()
                    append(b"".join((body[:-1], _MAC_MEMBER_B, prev.hex().encode(), b'"}\n')))
                else:
                    append(body + b"\n")
                seq += 1
        finally:
            self.seq = seq - 1
            self.head = prev
            self._ts_cache = (ts_sec, ts_prefix)
        return lines

    def _ts_member(self, ts_ns: int) -> str:
        sec = ts_ns // 1_000_000_000
        cached_sec, prefix = self._ts_cache
        if sec != cached_sec:
            prefix = time.strftime('"ts":"%Y-%m-%dT%H:%M:%S.', time.gmtime(sec))
            self._ts_cache = (sec, prefix)
        return f'{prefix}{ts_ns // 1000 % 1_000_000:06d}Z"'

    def _cache_actor(self, actor: Actor) -> str:
        if len(self._actor_cache) >= 256:
            self._actor_cache.clear()
        encoded = _actor_json(actor)
        self._actor_cache[id(actor)] = (actor, encoded)
        return encoded

    def _head_json(self, typ: Any, action: Any, outcome: Any) -> str:
        """The escaped ``"type"``, ``"action"`` and ``"outcome"`` members, cached when all
        three are plain strings (raises TypeError otherwise, for the generic path)."""
        head = (
            f'"type":{_q(typ)},"action":{_q(action or typ.rpartition(".")[2])},'
            f'"outcome":{_q(outcome)}'
        )
        if type(typ) is str and type(outcome) is str and (action is None or type(action) is str):
            if len(self._head_cache) >= 256:
                self._head_cache.clear()
            self._head_cache[(typ, action, outcome)] = head
        return head

    def _generic(self, r: PendingRecord, seq: int) -> str:
        """Same record, for odd inputs: non-string values are rendered with ``str``."""

        def s(v: Any) -> str | None:
            return None if v is None else str(v)

        typ, actor, resource, det = r.type, r.actor, r.resource, r.details
        rec: dict[str, Any] = {
            "v": SCHEMA_VERSION,
            "id": r.id,
            "ts": self._ts_member(r.ts)[6:-1],
            "type": str(typ),
            "action": str(r.action or str(typ).rpartition(".")[2]),
            "outcome": str(r.outcome),
            "actor": {k: s(v) for k, v in actor.as_dict().items()} if actor is not None else None,
            "resource": {k: s(v) for k, v in resource.as_dict().items()}
            if resource is not None
            else None,
            "correlation_id": s(r.correlation_id),
            "trace_id": s(r.trace[0]) if r.trace else None,
            "producer": self.producer_id,
            "seq": seq,
            "details": {str(k): v for k, v in det.items()} if det else {},
        }
        return _ENCODER(rec)
