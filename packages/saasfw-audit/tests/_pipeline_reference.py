"""A frozen copy of the pipeline's per-event encoding as it was before the batch rewrite.

Kept only as an oracle: the property tests check that the pipeline still produces these
exact bytes (encryption envelopes, canonical record, chain MAC, line) for the same inputs.
Do not optimise this file.
"""

from __future__ import annotations

import binascii
import json
import os
import time
from collections.abc import Callable
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from saasfw.audit import Actor, FieldCipher, Resource
from saasfw.audit._crypto import ENVELOPE_PREFIX
from saasfw.audit._event import SCHEMA_VERSION

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, default=str).encode
_q: Callable[[str], str] = encode_basestring_ascii


def _qn(value: str | None) -> str:
    return "null" if value is None else _q(value)


def _encode_details(details: dict[str, Any]) -> str:
    return _ENCODER(details)


def _encrypt_fields(
    cipher: FieldCipher,
    details: dict[str, Any],
    fields: tuple[str, ...],
    *,
    event_id: str,
    subject: str | None,
    nonces: bytes,
    offset: int,
) -> int:
    if subject is not None and cipher.subjects is not None:
        kid, aes = cipher.subjects.cipher_for_subject(subject)
    else:
        kid = cipher.keyring.active_id
        aes = cipher.keyring.cipher(kid)
    prefix = f"{ENVELOPE_PREFIX}{kid}:"
    for name in fields:
        if name not in details:
            continue
        value = details[name]
        nonce = nonces[offset : offset + 12]
        offset += 12
        if len(nonce) != 12:
            raise RuntimeError("nonce pool exhausted")
        if type(value) is str:
            plaintext = b"s" + value.encode()
        else:
            plaintext = b"j" + json.dumps(value, separators=(",", ":"), default=str).encode()
        ct = aes.encrypt(nonce, plaintext, f"{event_id}\x00{name}".encode())
        details[name] = prefix + binascii.b2a_base64(nonce + ct, newline=False).decode()
    return offset


def _ts(ts_ns: int) -> str:
    sec, ns = divmod(ts_ns, 1_000_000_000)
    prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
    return f"{prefix}{ns // 1000:06d}Z"


def _encode_generic(
    producer: str,
    eid: str,
    ts: int,
    typ: Any,
    action: Any,
    outcome: Any,
    actor: Actor | None,
    resource: Resource | None,
    corr: Any,
    trace_id: Any,
    seq: int,
    det: dict[str, Any] | None,
) -> str:
    def s(v: Any) -> str | None:
        return None if v is None else str(v)

    rec: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "id": eid,
        "ts": _ts(ts),
        "type": str(typ),
        "action": str(action or str(typ).rpartition(".")[2]),
        "outcome": str(outcome),
        "actor": {k: s(v) for k, v in actor.as_dict().items()} if actor is not None else None,
        "resource": {k: s(v) for k, v in resource.as_dict().items()}
        if resource is not None
        else None,
        "correlation_id": s(corr),
        "trace_id": s(trace_id),
        "producer": producer,
        "seq": seq,
        "details": {str(k): v for k, v in det.items()} if det else {},
    }
    return _ENCODER(rec)


def reference_lines(
    items: list[tuple[Any, ...]],
    *,
    producer: str,
    seq: int,
    prev: bytes,
    chain_key: bytes | None,
    cipher: FieldCipher | None,
    encrypted: tuple[str, ...],
) -> list[bytes]:
    """The lines the pipeline wrote for ``items`` (queue tuples) before the rewrite."""
    from cryptography.hazmat.primitives import hashes, hmac

    out: list[bytes] = []
    nonces = b""
    if cipher is not None and encrypted:
        nonces = os.urandom(12 * len(encrypted) * len(items))
    npos = 0
    for ts, eid, typ, action, outcome, actor, resource, corr, trace, det, subject, _ack in items:
        if det and cipher is not None and encrypted:
            try:
                npos = _encrypt_fields(
                    cipher,
                    det,
                    encrypted,
                    event_id=eid,
                    subject=subject,
                    nonces=nonces,
                    offset=npos,
                )
            except Exception:
                for name in encrypted:
                    if name in det and not str(det[name]).startswith(ENVELOPE_PREFIX):
                        det[name] = "<encryption failed>"
                npos += 12 * len(encrypted)
        seq += 1
        trace_id = trace[0] if trace else None
        try:
            actor_json = (
                "null"
                if actor is None
                else (
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
            )
            resource_json = (
                f'{{"type":{_q(resource.type)},"id":{_qn(resource.id)}}}'
                if resource is not None
                else "null"
            )
            ts_prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(ts // 1_000_000_000))
            canonical = (
                f'{{"v":{SCHEMA_VERSION},"id":"{eid}",'
                f'"ts":"{ts_prefix}{ts // 1000 % 1_000_000:06d}Z",'
                f'"type":{_q(typ)},"action":{_q(action or typ.rpartition(".")[2])},'
                f'"outcome":{_q(outcome)},"actor":{actor_json},"resource":{resource_json},'
                f'"correlation_id":{_qn(corr)},"trace_id":{_qn(trace_id)},'
                f'"producer":{_q(producer)},"seq":{seq},'
                f'"details":{_encode_details(det) if det else "{}"}}}'
            )
        except (TypeError, ValueError, AttributeError, RecursionError):
            canonical = _encode_generic(
                producer, eid, ts, typ, action, outcome, actor, resource, corr, trace_id, seq, det
            )
        body = canonical.encode()
        if chain_key is not None:
            h = hmac.HMAC(chain_key, hashes.SHA256())
            h.update(prev + body)
            mac = h.finalize()
            prev = mac
            out.append(b'%s,"mac":"%s"}\n' % (body[:-1], mac.hex().encode()))
        else:
            out.append(body + b"\n")
    return out
