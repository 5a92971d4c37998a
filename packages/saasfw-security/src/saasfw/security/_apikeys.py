"""API keys: typed, checksummed, shown once, stored only as a keyed hash.

Format: ``<prefix>_<key id>_<secret>_<checksum>``, e.g.
``sfw_live_7kq4x2m5v3b6n8ca_<52 base32 chars>_1a2b3c4d``.

* The prefix says what the string is (secret scanners and humans recognise it).
* The key id (80 random bits) is the storage lookup key; it is not secret.
* The secret has 256 random bits.
* The checksum (CRC-32 of the rest) rejects typos and junk offline, before any lookup,
  so garbage cannot be used to load the store. It is not a security control.

The store holds ``HMAC-SHA-256(pepper, key)`` and the pepper's id: a store dump alone does
not allow testing guesses, and peppers can rotate (old keys keep verifying with their id).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from pydantic import SecretStr

from saasfw.security._errors import AuthenticationError, ConfigurationError
from saasfw.security._events import SecurityEvent, SecurityEvents, SecurityEventType
from saasfw.security._principal import Principal

__all__ = [
    "ApiKeyRecord",
    "ApiKeyService",
    "ApiKeyStore",
    "CreatedApiKey",
    "MemoryApiKeyStore",
    "parse_api_key",
]

_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,15}(_[a-z0-9]{1,15})?$")
_KEY_ID = re.compile(r"^[a-z2-7]{16}$")
_SECRET = re.compile(r"^[a-z2-7]{52}$")
_CHECKSUM = re.compile(r"^[0-9a-f]{8}$")
_MAX_KEY_CHARS = 160


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """What the store keeps about a key: never the key itself."""

    key_id: str
    key_hash: bytes = field(repr=False)
    pepper_id: str
    name: str
    principal_id: str
    tenant: str | None
    scopes: frozenset[str]
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """The result of :meth:`ApiKeyService.create`; ``key`` is shown once and never stored."""

    key: str = field(repr=False)
    record: ApiKeyRecord


class ApiKeyStore(Protocol):
    """Storage port for API key records (memory, SQL, or your own)."""

    async def add(self, record: ApiKeyRecord) -> None:
        """Insert a new record (key ids are unique)."""
        ...

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        """Return the record for ``key_id`` or None."""
        ...

    async def revoke(self, key_id: str, revoked_at: float) -> bool:
        """Mark the key revoked; False if it does not exist."""
        ...

    async def list_for_principal(self, principal_id: str) -> list[ApiKeyRecord]:
        """Every key owned by ``principal_id`` (for management UIs)."""
        ...


class MemoryApiKeyStore:
    """Process-local store for tests and single-process tools."""

    def __init__(self) -> None:
        self._records: dict[str, ApiKeyRecord] = {}
        self._lock = threading.Lock()

    async def add(self, record: ApiKeyRecord) -> None:
        with self._lock:
            if record.key_id in self._records:
                raise ValueError("duplicate API key id")
            self._records[record.key_id] = record

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        return self._records.get(key_id)

    async def revoke(self, key_id: str, revoked_at: float) -> bool:
        with self._lock:
            record = self._records.get(key_id)
            if record is None:
                return False
            if record.revoked_at is None:
                self._records[key_id] = replace(record, revoked_at=revoked_at)
            return True

    async def list_for_principal(self, principal_id: str) -> list[ApiKeyRecord]:
        return [r for r in self._records.values() if r.principal_id == principal_id]


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode('ascii')) & 0xFFFFFFFF:08x}"


def parse_api_key(key: str, prefix: str) -> str:
    """Check the format and checksum offline; return the key id or raise.

    Raises:
        AuthenticationError: the string is not a well-formed key of this prefix.
    """
    malformed = AuthenticationError("the API key is malformed", code="api_key.malformed")
    if not isinstance(key, str) or len(key) > _MAX_KEY_CHARS or not key.startswith(prefix + "_"):
        raise malformed
    rest = key[len(prefix) + 1 :].split("_")
    if len(rest) != 3:
        raise malformed
    key_id, secret, checksum = rest
    if not (_KEY_ID.match(key_id) and _SECRET.match(secret) and _CHECKSUM.match(checksum)):
        raise malformed
    if not hmac.compare_digest(checksum, _checksum(key[: -len(checksum) - 1])):
        raise malformed
    return key_id


class ApiKeyService:
    """Creates, verifies and revokes API keys.

    Args:
        store: where records live.
        peppers: server-side secrets by id (e.g. ``{"2026-11": SecretStr(...)}``), at least
            32 bytes each; keep them out of the database.
        current_pepper: id of the pepper new keys are hashed with.
        prefix: typed prefix, e.g. ``sfw_live``.
        events: security-events port (key created, key revoked).
    """

    def __init__(
        self,
        store: ApiKeyStore,
        *,
        peppers: Mapping[str, SecretStr | bytes | str],
        current_pepper: str,
        prefix: str = "sfw",
        events: SecurityEvents | None = None,
    ) -> None:
        if not _PREFIX.match(prefix):
            raise ConfigurationError(
                "the API key prefix must be lowercase letters/digits, optionally one '_' part"
            )
        secrets_by_id: dict[str, bytes] = {}
        for pepper_id, value in peppers.items():
            raw = value.get_secret_value() if isinstance(value, SecretStr) else value
            raw_bytes = raw.encode() if isinstance(raw, str) else bytes(raw)
            if len(raw_bytes) < 32:
                raise ConfigurationError(f"API key pepper {pepper_id!r} needs at least 32 bytes")
            secrets_by_id[pepper_id] = raw_bytes
        if current_pepper not in secrets_by_id:
            raise ConfigurationError(
                f"the current API key pepper {current_pepper!r} is not configured"
            )
        self.store = store
        self.prefix = prefix
        self.events = events or SecurityEvents()
        self._peppers = secrets_by_id
        self._current = current_pepper

    def __repr__(self) -> str:
        return f"ApiKeyService(prefix={self.prefix!r}, peppers={sorted(self._peppers)!r})"

    def _hash(self, key: str, pepper_id: str) -> bytes:
        return hmac.new(self._peppers[pepper_id], key.encode("ascii"), hashlib.sha256).digest()

    def looks_like_key(self, value: str) -> bool:
        """True when ``value`` starts like one of this service's keys (e.g. in a query)."""
        return value.startswith(self.prefix + "_")

    async def create(
        self,
        name: str,
        *,
        principal_id: str,
        tenant: str | None = None,
        scopes: Iterable[str] = (),
        expires_in: float | None = None,
    ) -> CreatedApiKey:
        """Create a key; the returned ``key`` is the only time the plaintext exists."""
        key_id = _b32(secrets.token_bytes(10))
        body = f"{self.prefix}_{key_id}_{_b32(secrets.token_bytes(32))}"
        key = f"{body}_{_checksum(body)}"
        now = time.time()
        record = ApiKeyRecord(
            key_id=key_id,
            key_hash=self._hash(key, self._current),
            pepper_id=self._current,
            name=name,
            principal_id=principal_id,
            tenant=tenant,
            scopes=frozenset(scopes),
            created_at=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        await self.store.add(record)
        self.events.publish(
            SecurityEvent(
                type=SecurityEventType.KEY_CREATED,
                outcome="success",
                principal_id=principal_id,
                tenant=tenant,
                details={"key_id": key_id, "name": name},
            )
        )
        return CreatedApiKey(key, record)

    async def verify(self, key: str) -> Principal:
        """Return the key's principal or raise :class:`AuthenticationError`.

        Malformed keys and bad checksums fail before the store is touched.
        """
        key_id = parse_api_key(key, self.prefix)
        record = await self.store.get(key_id)
        failed = AuthenticationError("the API key is not valid", code="api_key.invalid")
        if record is None or record.pepper_id not in self._peppers:
            # Same work as a real check, so timing does not reveal which ids exist.
            hmac.compare_digest(self._hash(key, self._current), bytes(32))
            raise failed
        if not hmac.compare_digest(self._hash(key, record.pepper_id), record.key_hash):
            raise failed
        now = time.time()
        if record.revoked_at is not None and record.revoked_at <= now:
            raise AuthenticationError("the API key has been revoked", code="api_key.revoked")
        if record.expires_at is not None and record.expires_at <= now:
            raise AuthenticationError("the API key has expired", code="api_key.expired")
        return Principal(
            id=record.principal_id,
            kind="api_key",
            auth_method="api_key",
            tenant=record.tenant,
            permissions=record.scopes,
            claims=(("key_id", record.key_id), ("key_name", record.name)),
        )

    async def revoke(self, key_id: str, *, by: str | None = None) -> bool:
        """Revoke a key at once; False if it does not exist."""
        found = await self.store.revoke(key_id, time.time())
        if found:
            self.events.publish(
                SecurityEvent(
                    type=SecurityEventType.KEY_REVOKED,
                    outcome="success",
                    principal_id=by,
                    details={"key_id": key_id},
                )
            )
        return found

    async def revoke_principal(self, principal_id: str, *, by: str | None = None) -> list[str]:
        """Revoke every live key of ``principal_id`` (account disabled); return their ids.

        Keys already revoked are left as they are (their ``revoked_at`` stays). The listing
        is repeated until it shows no live key, so a key created while this runs is caught
        too.
        """
        revoked: list[str] = []
        for _ in range(3):
            now = time.time()
            live = [
                r.key_id
                for r in await self.store.list_for_principal(principal_id)
                if r.revoked_at is None or r.revoked_at > now
            ]
            if not live:
                break
            for key_id in live:
                if await self.revoke(key_id, by=by):
                    revoked.append(key_id)
        return revoked
