"""The audit event model and the ports through which the logger learns who acted."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performed the audited action, as established by the verified principal.

    Never built from client-supplied headers: the umbrella maps the security package's
    verified principal onto this through an :data:`ActorProvider`.
    """

    id: str
    kind: str = "user"
    tenant: str | None = None
    address: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"id": self.id, "kind": self.kind, "tenant": self.tenant, "address": self.address}


@dataclass(frozen=True, slots=True)
class Resource:
    """What the action was performed on."""

    type: str
    id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"type": self.type, "id": self.id}


ActorProvider = Callable[[], Actor | None]
"""Port: returns the actor of the current request or task (from the verified principal)."""

CorrelationIdProvider = Callable[[], str | None]
"""Port: returns the correlation id of the current request."""

TraceIdsProvider = Callable[[], tuple[str, str] | None]
"""Port: returns ``(trace_id, span_id)`` of the current span."""


class SecurityEventLike(Protocol):
    """Port: any object shaped like the security package's events."""

    @property
    def type(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def principal_id(self) -> str | None: ...
    @property
    def tenant(self) -> str | None: ...
    @property
    def address(self) -> str | None: ...
    @property
    def details(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One decoded audit record, as read back from a sink."""

    id: str
    timestamp: datetime
    type: str
    action: str
    outcome: str
    actor: Actor | None
    resource: Resource | None
    correlation_id: str | None
    trace_id: str | None
    producer: str
    seq: int
    details: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AuditEvent:
        """Build an event from a decoded record (a parsed JSON line or a SQL row's record)."""
        actor = record.get("actor")
        resource = record.get("resource")
        return cls(
            id=record["id"],
            timestamp=datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
            type=record["type"],
            action=record["action"],
            outcome=record["outcome"],
            actor=Actor(**actor) if actor else None,
            resource=Resource(**resource) if resource else None,
            correlation_id=record.get("correlation_id"),
            trace_id=record.get("trace_id"),
            producer=record["producer"],
            seq=record["seq"],
            details=dict(record.get("details") or {}),
            schema_version=record.get("v", SCHEMA_VERSION),
        )


_INSTANCE_BITS = int.from_bytes(os.urandom(3), "big") & 0x3FFFFF  # 22 bits


# The id's fourth group and the first two digits of the fifth depend only on the instance.
_TAIL = (_INSTANCE_BITS << 40) >> 40
_ID_SUFFIX_PREFIX = f"-{0x8000 | (_TAIL >> 8):04x}-{_TAIL & 0xFF:02x}"


# The id's first 13 characters change once per millisecond: formatted once per millisecond
# (a tuple replaced whole, so threads never see a torn pair).
_ms_prefix: tuple[int, str] = (-1, "")
_ID_TAIL_FORMAT = "%03x" + _ID_SUFFIX_PREFIX + "%010x"


def event_id(ts_ns: int, seq: int) -> str:
    """A UUIDv7 (RFC 9562): 48-bit millisecond time, sub-millisecond fraction, then
    22 random bits fixed per process and the low 40 bits of a per-logger counter.

    Time-ordered, and unique without a random draw on the caller's hot path.
    """
    global _ms_prefix
    ms, sub = divmod(ts_ns, 1_000_000)
    cached = _ms_prefix
    if cached[0] != ms:
        cached = _ms_prefix = (ms, f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7")
    return cached[1] + _ID_TAIL_FORMAT % (sub * 4096 // 1_000_000, seq & 0xFFFFFFFFFF)


def format_ts(ts_ns: int) -> str:
    """RFC 3339 UTC timestamp with microseconds."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ns // 1000:06d}Z"
