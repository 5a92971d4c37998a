"""The key-encryption port: ``KeyWrapper`` (wrap and unwrap data keys) and its local default.

Subject data keys are stored only wrapped by a key-encryption key (KEK). The KEK lives
behind this small port so a cloud KMS (AWS KMS ``Encrypt``/``Decrypt`` with an encryption
context, Google Cloud KMS with additional authenticated data, Vault transit) can hold it
instead of the service; :class:`LocalKeyWrapper` is the default, with the KEKs given in the
settings or secret files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from saasfw.audit._crypto import Keyring
from saasfw.audit._errors import AuditCryptoError

__all__ = ["KeyWrapper", "LocalKeyWrapper"]

_AD_PREFIX = b"saasfw.audit.kek\x00"


@runtime_checkable
class KeyWrapper(Protocol):
    """Wraps and unwraps data keys with a key-encryption key (KEK).

    ``context`` is bound to the wrapped key (associated data): a wrapped key copied to
    another row does not unwrap. Implementations must fail (raise) rather than return
    wrong bytes.
    """

    def wrap(self, key: bytes, *, context: bytes) -> tuple[str, bytes]:
        """Wrap ``key``; return the id of the KEK that wrapped it and the wrapped bytes."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes, *, context: bytes) -> bytes:
        """Unwrap bytes made by :meth:`wrap` with the KEK ``kek_id``."""
        ...


class LocalKeyWrapper:
    """AES-256-GCM key wrapping with local KEKs by id: the active one wraps, all unwrap.

    Rotation: add the new KEK, make it active; keys wrapped by the old one still unwrap
    while the old KEK stays configured.
    """

    def __init__(self, keys: Mapping[str, bytes] | Keyring, active: str | None = None) -> None:
        if isinstance(keys, Keyring):
            self._ring = keys
        else:
            if active is None:
                raise AuditCryptoError("name the active KEK", where="encryption.active_kek_id")
            self._ring = Keyring(keys, active)

    @property
    def active_kek_id(self) -> str:
        return self._ring.active_id

    def wrap(self, key: bytes, *, context: bytes) -> tuple[str, bytes]:
        kek_id = self._ring.active_id
        nonce = os.urandom(12)
        sealed = self._ring.cipher(kek_id).encrypt(nonce, key, _AD_PREFIX + context)
        return kek_id, nonce + sealed

    def unwrap(self, kek_id: str, wrapped: bytes, *, context: bytes) -> bytes:
        cipher = self._ring.cipher(kek_id)
        try:
            return cipher.decrypt(wrapped[:12], wrapped[12:], _AD_PREFIX + context)
        except Exception as exc:
            raise AuditCryptoError(
                f"a data key does not unwrap with KEK {kek_id!r}: wrong KEK, or the wrapped "
                "key was altered or moved to another row"
            ) from exc

    def __repr__(self) -> str:
        ids = sorted(self._ring.key_ids)
        return f"LocalKeyWrapper(active={self._ring.active_id!r}, kek_ids={ids!r})"
