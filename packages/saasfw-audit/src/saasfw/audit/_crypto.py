"""AES-256-GCM field encryption, a rotating keyring and per-subject data keys.

A field's envelope is ``enc:1:<key id>:<base64url(nonce || ciphertext)>``. The associated
data binds the event id and the field name, so a ciphertext copied into another record or
field fails to decrypt. Fields about a *subject* (a data subject in the GDPR sense) are
encrypted with that subject's own data key; erasing the key makes every copy of those
fields unreadable (crypto-shredding) while the hash chain, computed over ciphertext, still
verifies.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from saasfw.audit._errors import AuditConfigError, AuditCryptoError, KeyShreddedError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENVELOPE_PREFIX = "enc:1:"
_KID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SUBJECT_KID_PREFIX = "s-"


def _aesgcm(key: bytes) -> AESGCM:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def decode_key(material: str | bytes, *, where: str, size: int = 32) -> bytes:
    """Decode a key given as base64 (standard or url-safe alphabet) or as hex digits."""
    text = (material.decode() if isinstance(material, bytes) else material).strip()
    raw: bytes | None
    if re.fullmatch(r"[0-9a-fA-F]+", text) and len(text) == 2 * size:
        raw = bytes.fromhex(text)
    else:
        std = text.replace("-", "+").replace("_", "/")
        try:
            raw = base64.b64decode(std + "=" * (-len(std) % 4), validate=True)
        except binascii.Error:
            raw = None
    if raw is None or len(raw) != size:
        raise AuditConfigError(
            f"a key must be {size} bytes, given as base64 or {2 * size} hex digits", where=where
        )
    return raw


class Keyring:
    """Named 256-bit keys; the active one encrypts, every one still decrypts (rotation)."""

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        if not keys:
            raise AuditConfigError("the keyring is empty", where="encryption.keys")
        for kid, key in keys.items():
            if not _KID_RE.match(kid) or kid.startswith(_SUBJECT_KID_PREFIX):
                raise AuditConfigError(
                    f"key id {kid!r} must match [A-Za-z0-9_.-]{{1,64}} and not start with 's-'",
                    where="encryption.keys",
                )
            if len(key) != 32:
                raise AuditConfigError(f"key {kid!r} is not 32 bytes", where="encryption.keys")
        if active not in keys:
            raise AuditConfigError(
                f"active key id {active!r} is not in the keyring", where="encryption.active_key_id"
            )
        self._keys = dict(keys)
        self._active = active
        self._ciphers: dict[str, AESGCM] = {}

    @property
    def active_id(self) -> str:
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def cipher(self, kid: str) -> AESGCM:
        c = self._ciphers.get(kid)
        if c is None:
            key = self._keys.get(kid)
            if key is None:
                raise AuditCryptoError(f"unknown key id {kid!r}; is an old key missing?")
            c = self._ciphers[kid] = _aesgcm(key)
        return c

    def __repr__(self) -> str:
        return f"Keyring(active={self._active!r}, key_ids={sorted(self._keys)!r})"


def new_subject_kid() -> str:
    """A fresh, random key id for a subject data key (``s-`` and 16 hex digits)."""
    return _SUBJECT_KID_PREFIX + secrets.token_hex(8)


class SubjectKeys(Protocol):
    """Where :class:`FieldCipher` gets per-subject data keys (file or SQL store)."""

    def ensure(self, subjects: Iterable[str]) -> None:
        """Create the keys of subjects that have none (erased subjects get none)."""
        ...

    def cipher_for_subject(self, subject: str) -> tuple[str, AESGCM]:
        """The subject's key id and cipher; raises KeyShreddedError once erased."""
        ...

    def cipher_for_kid(self, kid: str) -> AESGCM:
        """The cipher of a data key by id; raises KeyShreddedError once erased."""
        ...

    def erase(self, subject: str) -> str | None:
        """Crypto-shred the subject; return its key id (None when it had none)."""
        ...


class SubjectKeyStore:
    """Per-subject data keys, wrapped by the keyring, kept in one JSON file.

    For one process in development: every instance would keep its own file, so an erasure
    on one would leave the subject readable on the others (use ``SqlSubjectKeyStore`` for a
    fleet). Unlike the SQL store it keeps no tombstone: a subject used again after its
    erasure gets a new key.

    The file is replaced atomically (write, fsync, rename, fsync directory) on every change.
    Erasing a subject removes its wrapped key for good; its key id is remembered as erased so
    decryption can say "shredded" rather than "unknown key".
    """

    def __init__(self, path: str | os.PathLike[str], keyring: Keyring) -> None:
        self._path = Path(path)
        self._keyring = keyring
        self._lock = threading.Lock()
        self._by_subject: dict[str, dict[str, str]] = {}
        self._erased: set[str] = set()
        self._ciphers: dict[str, AESGCM] = {}
        self._subject_kid: dict[str, str] = {}
        if self._path.exists():
            data = json.loads(self._path.read_text("utf-8"))
            self._by_subject = dict(data.get("subjects", {}))
            self._erased = set(data.get("erased", []))
        for subject, entry in self._by_subject.items():
            self._subject_kid[entry["kid"]] = subject

    def _save(self) -> None:
        payload = json.dumps(
            {"version": 1, "subjects": self._by_subject, "erased": sorted(self._erased)},
            sort_keys=True,
        )
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(self._path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self._path)
        dfd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _unwrap(self, kid: str, entry: Mapping[str, str]) -> AESGCM:
        blob = base64.urlsafe_b64decode(entry["wrapped"])
        try:
            key = self._keyring.cipher(entry["kek"]).decrypt(blob[:12], blob[12:], kid.encode())
        except Exception as exc:
            raise AuditCryptoError(f"cannot unwrap data key {kid}", where=str(self._path)) from exc
        return _aesgcm(key)

    def _create_locked(self, subject: str) -> dict[str, str]:
        kid = new_subject_kid()
        key = os.urandom(32)
        nonce = os.urandom(12)
        kek = self._keyring.active_id
        wrapped = nonce + self._keyring.cipher(kek).encrypt(nonce, key, kid.encode())
        entry = {"kid": kid, "kek": kek, "wrapped": base64.urlsafe_b64encode(wrapped).decode()}
        self._by_subject[subject] = entry
        self._subject_kid[kid] = subject
        self._ciphers[kid] = _aesgcm(key)
        return entry

    def ensure(self, subjects: Iterable[str]) -> None:
        """Create the data keys of all new subjects with one durable write of the store.

        The store is saved (fsynced) before any record encrypted under a new key can be
        written, so a crash never leaves ciphertext whose key was lost.
        """
        with self._lock:
            new = [s for s in set(subjects) if s not in self._by_subject]
            for subject in new:
                self._create_locked(subject)
            if new:
                self._save()

    def cipher_for_subject(self, subject: str) -> tuple[str, AESGCM]:
        """The key id and cipher of the subject's data key, creating the key on first use."""
        with self._lock:
            entry = self._by_subject.get(subject)
            if entry is None:
                entry = self._create_locked(subject)
                self._save()
            kid = entry["kid"]
            c = self._ciphers.get(kid)
            if c is None:
                c = self._ciphers[kid] = self._unwrap(kid, entry)
            return kid, c

    def cipher_for_kid(self, kid: str) -> AESGCM:
        with self._lock:
            if kid in self._erased:
                raise KeyShreddedError(f"data key {kid} was erased (crypto-shredded)")
            c = self._ciphers.get(kid)
            if c is not None:
                return c
            subject = self._subject_kid.get(kid)
            if subject is None:
                raise AuditCryptoError(f"unknown data key {kid}")
            c = self._ciphers[kid] = self._unwrap(kid, self._by_subject[subject])
            return c

    def erase(self, subject: str) -> str | None:
        """Erase the subject's data key; return its key id (holds no personal data)."""
        with self._lock:
            entry = self._by_subject.pop(subject, None)
            if entry is None:
                return None
            kid = entry["kid"]
            self._subject_kid.pop(kid, None)
            self._ciphers.pop(kid, None)
            self._erased.add(kid)
            self._save()
            return kid

    def __repr__(self) -> str:
        return f"SubjectKeyStore(path={str(self._path)!r}, subjects={len(self._by_subject)})"


class FieldCipher:
    """Encrypts and decrypts chosen detail fields of audit records.

    Envelope: ``enc:1:<key id>:<base64(12-byte nonce || AES-256-GCM ciphertext+tag)>``; the
    plaintext is ``s`` + UTF-8 for strings, ``j`` + JSON otherwise; the associated data is
    ``<event id> NUL <field name>``.
    """

    def __init__(self, keyring: Keyring, subjects: SubjectKeys | None = None) -> None:
        self.keyring = keyring
        self.subjects = subjects

    def encrypt(
        self, value: Any, *, event_id: str, field: str, subject: str | None, nonce: bytes
    ) -> str:
        if subject is not None and self.subjects is not None:
            kid, cipher = self.subjects.cipher_for_subject(subject)
        else:
            kid = self.keyring.active_id
            cipher = self.keyring.cipher(kid)
        # Strings (the common case) skip JSON: a one-byte tag says how to read the plaintext.
        if type(value) is str:
            plaintext = b"s" + value.encode()
        else:
            plaintext = b"j" + json.dumps(value, separators=(",", ":"), default=str).encode()
        ct = cipher.encrypt(nonce, plaintext, f"{event_id}\x00{field}".encode())
        return f"{ENVELOPE_PREFIX}{kid}:{binascii.b2a_base64(nonce + ct, newline=False).decode()}"

    def encrypt_fields(
        self,
        details: dict[str, Any],
        fields: Sequence[str],
        *,
        event_id: str,
        subject: str | None,
        nonces: bytes,
        offset: int,
    ) -> int:
        """Encrypt ``fields`` of ``details`` in place (the pipeline's batch path).

        Nonces are taken from ``nonces`` starting at ``offset`` (12 bytes per field present);
        returns the new offset. Raises on the first field that cannot be encrypted; the
        caller then replaces every field still in clear (fail closed).
        """
        if subject is not None and self.subjects is not None:
            kid, cipher = self.subjects.cipher_for_subject(subject)
        else:
            kid = self.keyring.active_id
            cipher = self.keyring.cipher(kid)
        prefix = f"{ENVELOPE_PREFIX}{kid}:"
        b2a = binascii.b2a_base64
        for name in fields:
            if name not in details:
                continue
            value = details[name]
            nonce = nonces[offset : offset + 12]
            offset += 12
            if len(nonce) != 12:
                raise AuditCryptoError("nonce pool exhausted")  # never reuse or shorten
            if type(value) is str:
                plaintext = b"s" + value.encode()
            else:
                plaintext = b"j" + json.dumps(value, separators=(",", ":"), default=str).encode()
            ct = cipher.encrypt(nonce, plaintext, f"{event_id}\x00{name}".encode())
            details[name] = prefix + b2a(nonce + ct, newline=False).decode()
        return offset

    def encrypt_batch(
        self,
        events: Sequence[tuple[str, dict[str, Any], str | None]],
        fields: Sequence[str],
        nonce_slots: int,
    ) -> list[tuple[str, Exception]]:
        """Encrypt ``fields`` of each ``(event id, details, subject)`` in place (the pipeline).

        Draws one pool of ``12 * len(fields) * nonce_slots`` random bytes for the batch
        (``nonce_slots`` >= ``len(events)``) and takes 12 per field present, in order, so no
        nonce is ever used twice. An event whose encryption fails has every field still in
        clear replaced by ``<encryption failed>`` (fail closed) and is returned with its error.
        """
        failed: list[tuple[str, Exception]] = []
        if not events:
            return failed
        nonces = os.urandom(12 * len(fields) * nonce_slots)
        stride = 12 * len(fields)
        # The associated data is "<event id> NUL <field name>": the field half built once.
        named = [(name, b"\x00" + name.encode()) for name in fields]
        subjects = self.subjects
        default: tuple[str, AESGCM] | None
        try:
            kid = self.keyring.active_id
            default = (f"{ENVELOPE_PREFIX}{kid}:", self.keyring.cipher(kid))
        except Exception:
            default = None  # each event then fails closed below
        b2a = binascii.b2a_base64
        dumps = json.dumps
        offset = 0
        for eid, details, subject in events:
            start = offset
            try:
                if subject is not None and subjects is not None:
                    skid, cipher = subjects.cipher_for_subject(subject)
                    prefix = f"{ENVELOPE_PREFIX}{skid}:"
                elif default is None:
                    kid = self.keyring.active_id
                    prefix, cipher = f"{ENVELOPE_PREFIX}{kid}:", self.keyring.cipher(kid)
                else:
                    prefix, cipher = default
                ad = eid.encode()
                for name, ad_field in named:
                    if name not in details:
                        continue
                    value = details[name]
                    # The pool holds stride bytes per event: never short, never reused.
                    nonce = nonces[offset : offset + 12]
                    offset += 12
                    if type(value) is str:
                        plaintext = b"s" + value.encode()
                    else:
                        plaintext = b"j" + dumps(value, separators=(",", ":"), default=str).encode()
                    ct = cipher.encrypt(nonce, plaintext, ad + ad_field)
                    details[name] = prefix + b2a(nonce + ct, newline=False).decode()
            except Exception as exc:
                for name in fields:
                    if name in details and not str(details[name]).startswith(ENVELOPE_PREFIX):
                        details[name] = "<encryption failed>"
                offset = start + stride
                failed.append((eid, exc))
        return failed

    def decrypt(self, envelope: str, *, event_id: str, field: str) -> Any:
        """Decrypt one envelope; raises KeyShreddedError when the subject was erased."""
        if not envelope.startswith(ENVELOPE_PREFIX):
            raise AuditCryptoError(f"field {field!r} is not an encryption envelope")
        kid, _, blob64 = envelope[len(ENVELOPE_PREFIX) :].partition(":")
        if kid.startswith(_SUBJECT_KID_PREFIX):
            if self.subjects is None:
                raise AuditCryptoError(f"field {field!r} needs the subject key store")
            cipher = self.subjects.cipher_for_kid(kid)
        else:
            cipher = self.keyring.cipher(kid)
        try:
            blob = binascii.a2b_base64(blob64)
            plaintext = cipher.decrypt(blob[:12], blob[12:], f"{event_id}\x00{field}".encode())
        except Exception as exc:
            raise AuditCryptoError(
                f"field {field!r} of event {event_id} does not decrypt: wrong key, "
                "or the ciphertext was altered or moved from another record or field"
            ) from exc
        if plaintext[:1] == b"s":
            return plaintext[1:].decode()
        return json.loads(plaintext[1:])

    def decrypt_details(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The record's details with every envelope decrypted (raises on the first failure)."""
        out: dict[str, Any] = {}
        for name, value in (record.get("details") or {}).items():
            if isinstance(value, str) and value.startswith(ENVELOPE_PREFIX):
                out[name] = self.decrypt(value, event_id=record["id"], field=name)
            else:
                out[name] = value
        return out
