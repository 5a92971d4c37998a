"""Paging input validation and tamper-evident keyset cursors.

Everything here runs before any SQL: a request that fails validation never reaches the
database. Sort keys are checked against an allow-list, page sizes are clamped, offsets are
bounded, and cursors are HMAC-signed and bound to the sort they were issued for.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar

from saasfw.db._errors import InvalidQueryError

T = TypeVar("T")

_SORT_KEY = re.compile(r"^(-?)([a-z_][a-z0-9_]{0,62})$")
_DIGITS = re.compile(r"^[0-9]{1,10}$")
_MAX_SORT_TEXT = 256
_MAX_SORT_KEYS = 4
_MAX_CURSOR = 2048
_INT32_MAX = 2**31 - 1
_CURSOR_VERSION = 1


@dataclass(frozen=True, slots=True)
class PagingPolicy:
    """Page-size and offset bounds (from ``DbSettings``)."""

    default_page_size: int = 20
    max_page_size: int = 100
    max_offset: int = 10_000


@dataclass(frozen=True, slots=True)
class SortKey:
    """One ORDER BY term: a column name and a direction."""

    name: str
    descending: bool = False

    def __str__(self) -> str:
        return f"-{self.name}" if self.descending else self.name


@dataclass(frozen=True, slots=True)
class KeysetPageRequest:
    """A validated keyset page request: sort (with the key tie-break), limit, position."""

    sort: tuple[SortKey, ...]
    limit: int
    after: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class OffsetPageRequest:
    """A validated offset page request."""

    sort: tuple[SortKey, ...]
    limit: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class KeysetPage(Generic[T]):
    """One keyset page; pass ``next_cursor`` back to get the following page."""

    items: list[T]
    next_cursor: str | None
    limit: int


@dataclass(frozen=True, slots=True)
class OffsetPage(Generic[T]):
    """One offset page with the total number of matching rows."""

    items: list[T]
    total: int
    limit: int
    offset: int


def parse_limit(raw: int | str | None, policy: PagingPolicy) -> int:
    """A page size: absent = default; 1..2**31-1 is clamped to the maximum; else 400."""
    if raw is None or raw == "":
        return policy.default_page_size
    if isinstance(raw, bool):
        raise InvalidQueryError("limit must be a positive integer", parameter="limit")
    if isinstance(raw, str):
        if not _DIGITS.fullmatch(raw):
            raise InvalidQueryError("limit must be a positive integer", parameter="limit")
        raw = int(raw)
    if not isinstance(raw, int) or raw < 1 or raw > _INT32_MAX:
        raise InvalidQueryError("limit must be a positive integer", parameter="limit")
    return min(raw, policy.max_page_size)


def parse_offset(raw: int | str | None, policy: PagingPolicy) -> int:
    """An offset in 0..max_offset; anything else is 400 (deep offsets are a DoS vector)."""
    if raw is None or raw == "":
        return 0
    if isinstance(raw, bool):
        raise InvalidQueryError("offset must be a non-negative integer", parameter="offset")
    if isinstance(raw, str):
        if not _DIGITS.fullmatch(raw):
            raise InvalidQueryError("offset must be a non-negative integer", parameter="offset")
        raw = int(raw)
    if not isinstance(raw, int) or raw < 0:
        raise InvalidQueryError("offset must be a non-negative integer", parameter="offset")
    if raw > policy.max_offset:
        raise InvalidQueryError(
            f"offset must not exceed {policy.max_offset}; use cursor paging to go deeper",
            parameter="offset",
        )
    return raw


def parse_sort(
    raw: str | Sequence[str] | None,
    allowed: frozenset[str],
    default: tuple[SortKey, ...],
    tie_break: Sequence[str],
) -> tuple[SortKey, ...]:
    """Validate ``"-created_at,name"`` against ``allowed`` and append the key tie-break.

    The tie-break (the primary key, ascending) makes the order total, so no two rows
    compare equal and keyset paging cannot repeat or skip a row.
    """
    if raw is None or raw == "" or (not isinstance(raw, str) and len(raw) == 0):
        keys = default
    else:
        if isinstance(raw, str):
            if len(raw) > _MAX_SORT_TEXT:
                raise InvalidQueryError("sort is too long", parameter="sort")
            parts = raw.split(",")
        else:
            parts = list(raw)
        if len(parts) > _MAX_SORT_KEYS:
            raise InvalidQueryError(f"sort accepts at most {_MAX_SORT_KEYS} keys", parameter="sort")
        parsed: list[SortKey] = []
        for part in parts:
            match = _SORT_KEY.fullmatch(part.strip()) if isinstance(part, str) else None
            if match is None or match.group(2) not in allowed:
                names = ", ".join(sorted(allowed)) or "(none)"
                raise InvalidQueryError(
                    f"unknown sort key; allowed: {names} (prefix - for descending)",
                    parameter="sort",
                )
            key = SortKey(match.group(2), descending=match.group(1) == "-")
            if any(existing.name == key.name for existing in parsed):
                raise InvalidQueryError("sort names a key twice", parameter="sort")
            parsed.append(key)
        keys = tuple(parsed)
    chosen = {key.name for key in keys}
    return keys + tuple(SortKey(name) for name in tie_break if name not in chosen)


def _to_json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return ["f", value.hex()]
    if isinstance(value, uuid.UUID):
        return ["u", value.hex]
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, date):
        return ["d", value.isoformat()]
    if isinstance(value, Decimal):
        return ["n", str(value)]
    raise TypeError(f"cannot put a {type(value).__name__} into a cursor")


def _from_json(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
        raise ValueError("malformed cursor value")
    tag, text = value
    if tag == "f":
        return float.fromhex(text)
    if tag == "u":
        return uuid.UUID(hex=text)
    if tag == "t":
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            raise ValueError("naive datetime in cursor")
        return parsed
    if tag == "d":
        return date.fromisoformat(text)
    if tag == "n":
        return Decimal(text)
    raise ValueError("unknown cursor value tag")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    # validate=True: characters outside the alphabet are an error, not silently dropped.
    return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)


class CursorCodec:
    """Opaque keyset cursors: ``base64url(json) . base64url(HMAC-SHA256)``.

    The signature covers the position and the sort (plus a scope such as the table), so
    a cursor cannot be forged, edited, or replayed against another sort or table.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("cursor key must be at least 16 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "CursorCodec(key=<hidden>)"

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def encode(self, scope: str, sort: tuple[SortKey, ...], values: Sequence[Any]) -> str:
        """A signed cursor for the row whose sort-key values are ``values``."""
        body = {
            "v": _CURSOR_VERSION,
            "s": scope,
            "o": ",".join(str(key) for key in sort),
            "k": [_to_json(value) for value in values],
        }
        payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        return f"{_b64encode(payload)}.{_b64encode(self._sign(payload))}"

    def decode(self, scope: str, sort: tuple[SortKey, ...], cursor: str) -> tuple[Any, ...]:
        """The position in ``cursor``; InvalidQueryError unless it is ours, intact and current."""
        invalid = InvalidQueryError(
            "cursor is invalid or expired; restart from the first page", parameter="cursor"
        )
        if not isinstance(cursor, str) or len(cursor) > _MAX_CURSOR or cursor.count(".") != 1:
            raise invalid
        payload_text, signature_text = cursor.split(".")
        try:
            payload = _b64decode(payload_text)
            signature = _b64decode(signature_text)
        except (binascii.Error, ValueError):
            raise invalid from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise invalid
        try:
            body = json.loads(payload)
            if (
                not isinstance(body, dict)
                or body.get("v") != _CURSOR_VERSION
                or body.get("s") != scope
                or body.get("o") != ",".join(str(key) for key in sort)
                or not isinstance(body.get("k"), list)
                or len(body["k"]) != len(sort)
            ):
                raise invalid
            return tuple(_from_json(value) for value in body["k"])
        except (ValueError, TypeError, InvalidOperation):
            raise invalid from None
