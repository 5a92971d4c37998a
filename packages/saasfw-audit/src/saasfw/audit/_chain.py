"""Keyed hash chain (HMAC-SHA-256) and Ed25519-signed checkpoints.

Each record's ``mac`` is ``HMAC(chain key, previous mac || canonical record)``, where the
canonical record is the line's JSON without its trailing ``"mac"`` member. Checkpoints
(producer, sequence number, chain head) are signed with an Ed25519 key and written to a
separate file, so an attacker who learns or guesses the chain key and re-chains the log
still cannot forge the signed heads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from saasfw.audit._append import append_all_or_nothing
from saasfw.audit._errors import AuditConfigError, AuditIntegrityError
from saasfw.audit._event import format_ts

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

GENESIS = bytes(32)


class ChainKey:
    """The secret HMAC key of the chain; its repr never shows the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise AuditConfigError("the chain key must be at least 32 bytes", where="chain_key")
        self._key = key
        from cryptography.hazmat.primitives import hashes, hmac

        # Keyed once; each MAC copies the keyed state (three times cheaper than re-keying).
        self._base = hmac.HMAC(key, hashes.SHA256())

    def hmac_factory(self) -> Callable[[], Any]:
        """A fresh keyed HMAC per call (a copy of the keyed state; for hot loops)."""
        return self._base.copy

    def mac(self, prev: bytes, canonical: bytes) -> bytes:
        h = self._base.copy()
        h.update(prev + canonical)
        return h.finalize()

    def __repr__(self) -> str:
        return "ChainKey(<hidden>)"


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def load_signing_key(material: str | bytes, *, where: str = "checkpoint.signing_key") -> Any:
    """An Ed25519 private key from a PEM (PKCS#8) or a 32-byte raw seed in base64/hex."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from saasfw.audit._crypto import decode_key

    data = material.encode() if isinstance(material, str) else material
    if b"-----BEGIN" in data:
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditConfigError("the signing key is not an Ed25519 key", where=where)
        return key
    return Ed25519PrivateKey.from_private_bytes(decode_key(data, where=where))


def load_public_key(material: str | bytes, *, where: str = "public key") -> Any:
    """An Ed25519 public key from a PEM or a 32-byte raw key in base64/hex."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from saasfw.audit._crypto import decode_key

    data = material.encode() if isinstance(material, str) else material
    if b"-----BEGIN" in data:
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise AuditConfigError("the public key is not an Ed25519 key", where=where)
        return key
    return Ed25519PublicKey.from_public_bytes(decode_key(data, where=where))


def public_key_id(public_key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(private_key: Ed25519PrivateKey) -> bytes:
    """The PEM of the public half, to hand to auditors running ``saasfw-audit verify``."""
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class CheckpointWriter:
    """Signs chain heads and appends them, fsynced, to a checkpoint file apart from the log.

    Heads are kept per producer (a file shared by several producers, or a spill file
    replayed after a restart, holds several chains). A checkpoint of each producer whose
    head moved is written when ``every_records`` records or ``every_seconds`` have passed
    since the last one; at shutdown a *final* checkpoint (``"final": true``) of each head
    marks the chain as cleanly ended; retention writes anchors when it re-anchors a chain.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        signing_key: Ed25519PrivateKey,
        *,
        every_records: int = 1000,
        every_seconds: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self._key = signing_key
        self._key_id = public_key_id(signing_key.public_key())
        self._every_records = every_records
        self._every_seconds = every_seconds
        self._lock = threading.Lock()
        self._since = 0
        self._last_time = time.monotonic()
        self._heads: dict[str, tuple[int, str]] = {}
        self._written: dict[str, tuple[int, str, bool]] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def observe(self, producer: str, seq: int, mac_hex: str, count: int) -> None:
        """Note a durable chain head; write a checkpoint if one is due."""
        with self._lock:
            self._heads[producer] = (seq, mac_hex)
            self._since += count
            if (
                self._since >= self._every_records
                or time.monotonic() - self._last_time >= self._every_seconds
            ):
                self._write_locked(None, final=False)

    def write_now(self, note: str | None = None, *, final: bool = True) -> None:
        """Write a checkpoint of each producer's latest head; ``final`` at a clean shutdown."""
        with self._lock:
            self._write_locked(note, final=final)

    def write_anchor(self, producer: str, seq: int, mac_hex: str, note: str) -> None:
        """Sign the link a retention purge removed, so the kept suffix still verifies.

        The verifier starts the producer's chain from an anchor at ``seq`` when the log's
        first record is ``seq + 1``; without one, missing leading records are reported.
        """
        with self._lock:
            self._append({"anchor": True}, (producer, seq, mac_hex), note)

    def _write_locked(self, note: str | None, *, final: bool) -> None:
        for producer, (seq, mac_hex) in self._heads.items():
            written = self._written.get(producer)
            if written is not None and written[:2] == (seq, mac_hex) and (written[2] or not final):
                continue  # already signed, as final as asked
            self._append({"final": final}, (producer, seq, mac_hex), note)
            self._written[producer] = (seq, mac_hex, final)
        self._since = 0
        self._last_time = time.monotonic()

    def _append(self, extra: dict[str, Any], head: tuple[str, int, str], note: str | None) -> None:
        producer, seq, mac_hex = head
        body: dict[str, Any] = {
            **extra,
            "key": self._key_id,
            "mac": mac_hex,
            "producer": producer,
            "seq": seq,
            "ts": format_ts(time.time_ns()),
        }
        if note:
            body["note"] = note
        sig = self._key.sign(canonical_json(body))
        body["sig"] = base64.b64encode(sig).decode()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:  # all or nothing: a full volume must not leave half a checkpoint line
            append_all_or_nothing(fd, canonical_json(body) + b"\n", os.fstat(fd).st_size)
        finally:
            os.close(fd)

    def __repr__(self) -> str:
        return f"CheckpointWriter(path={str(self.path)!r}, key_id={self._key_id!r})"


def read_checkpoints(
    path: str | os.PathLike[str], public_key: Ed25519PublicKey
) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Parse and verify a checkpoint file: (valid checkpoints, [(line number, problem)])."""
    from cryptography.exceptions import InvalidSignature

    good: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AuditIntegrityError(
            f"cannot read checkpoints: {exc.strerror}", where=str(path)
        ) from None
    for lineno, raw in enumerate(data.splitlines(), start=1):
        try:
            body = json.loads(raw)
            sig = base64.b64decode(body.pop("sig"))
            public_key.verify(sig, canonical_json(body))
        except InvalidSignature:
            bad.append((lineno, "checkpoint signature is invalid (forged or altered)"))
            continue
        except (ValueError, KeyError, TypeError, AttributeError):
            bad.append((lineno, "checkpoint line is malformed"))
            continue
        good.append(body)
    return good, bad
