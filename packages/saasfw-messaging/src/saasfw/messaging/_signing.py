"""HMAC-SHA256 event signatures per source, with key ids so keys can rotate.

A producer signs with one key (its id travels in ``sigkeyid``); a consumer holds several
verification keys per source, so a new key can be added everywhere before producers switch
to it and the old one removed after. The signature covers every attribute, the actor,
tenant and sequence included: a consumer trusts those only from a verified event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from pydantic import SecretStr

from saasfw.messaging._envelope import CloudEvent
from saasfw.messaging._errors import SignatureError

__all__ = ["EventSigner", "EventVerifier"]

_MIN_KEY_BYTES = 32


def _mac(key: SecretStr, event: CloudEvent) -> str:
    digest = hmac.new(
        key.get_secret_value().encode(), event.canonical_bytes(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _check_key(key: SecretStr, where: str) -> None:
    if len(key.get_secret_value().encode()) < _MIN_KEY_BYTES:
        raise ValueError(
            f"the signing key {where} is shorter than {_MIN_KEY_BYTES} bytes; "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


class EventSigner:
    """Sign events of one ``source`` with its current key ``key_id``."""

    def __init__(self, source: str, key_id: str, key: SecretStr) -> None:
        if not source or not key_id:
            raise ValueError("an event signer needs a source and a key id")
        _check_key(key, f"{key_id!r} of source {source!r}")
        self.source = source
        self.key_id = key_id
        self._key = key

    def sign(self, event: CloudEvent) -> CloudEvent:
        """The event stamped with this signer's source and key id, and signed."""
        stamped = event.model_copy(
            update={"source": self.source, "sigkeyid": self.key_id, "signature": None}
        )
        return stamped.model_copy(update={"signature": _mac(self._key, stamped)})

    def __repr__(self) -> str:
        return f"EventSigner(source={self.source!r}, key_id={self.key_id!r})"


class EventVerifier:
    """Verify events against the keys each source may sign with (``{source: {key_id: key}}``)."""

    def __init__(self, keys: Mapping[str, Mapping[str, SecretStr]]) -> None:
        for source, by_id in keys.items():
            for key_id, key in by_id.items():
                _check_key(key, f"{key_id!r} of source {source!r}")
        self._keys = {source: dict(by_id) for source, by_id in keys.items()}

    def verify(self, event: CloudEvent) -> CloudEvent:
        """Return the event when its signature verifies, else raise :class:`SignatureError`."""
        if not event.signature or not event.sigkeyid:
            raise SignatureError(
                f"event {event.id} from {event.source!r} is not signed", reason="missing"
            )
        key = self._keys.get(event.source, {}).get(event.sigkeyid)
        if key is None:
            raise SignatureError(
                f"event {event.id}: no verification key {event.sigkeyid!r} for source "
                f"{event.source!r}; add it to the consumer's verification keys",
                reason="unknown-key",
            )
        if not hmac.compare_digest(_mac(key, event), event.signature):
            raise SignatureError(
                f"event {event.id} from {event.source!r}: the signature does not match "
                f"key {event.sigkeyid!r} (altered in transit, or signed with another key)",
                reason="mismatch",
            )
        return event

    def __repr__(self) -> str:
        ids = {source: sorted(by_id) for source, by_id in self._keys.items()}
        return f"EventVerifier(key_ids={ids!r})"
