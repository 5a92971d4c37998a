"""The CloudEvents 1.0 envelope every event travels in, and its JSON form.

Structured mode (``application/cloudevents+json``): the whole envelope is the message
body, so it survives any broker and any hop unchanged and one signature covers it. The
extension attributes carry what a consumer needs besides the payload: ``traceparent`` (W3C
trace context), ``correlationid``, ``tenant``, ``actor``, ``partitionkey`` (the ordering
key, as in the CloudEvents partitioning extension), ``sequence`` (the per-key number the
outbox assigned) and the signature pair ``sigkeyid`` / ``signature``.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from saasfw.messaging._errors import EventRejected

__all__ = ["CONTENT_TYPE", "EVENT_TYPE_PATTERN", "CloudEvent", "parse_event"]

CONTENT_TYPE = "application/cloudevents+json"

# The type names its version last, so a consumer can run v1 and v2 handlers side by side
# while producers migrate: ``orders.order.created.v1``.
EVENT_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)+\.v[1-9][0-9]*$")


class CloudEvent(BaseModel):
    """One event: CloudEvents 1.0 context attributes, saasfw extensions and a JSON payload.

    Build one with :meth:`create` from a pydantic payload; the :class:`~saasfw.messaging.
    Publisher` fills ``source``, the context extensions, ``sequence`` and the signature.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: str = "1.0"
    id: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1, max_length=500)
    type: str = Field(min_length=1, max_length=200)
    subject: str | None = Field(default=None, max_length=500)
    time: str
    datacontenttype: str = "application/json"
    data: dict[str, Any]
    traceparent: str | None = None
    correlationid: str | None = Field(default=None, max_length=200)
    tenant: str | None = Field(default=None, max_length=200)
    actor: str | None = Field(default=None, max_length=200)
    partitionkey: str | None = Field(default=None, max_length=200)
    sequence: int | None = Field(default=None, ge=1)
    sigkeyid: str | None = Field(default=None, max_length=100)
    signature: str | None = Field(default=None, max_length=200)

    @field_validator("specversion")
    @classmethod
    def _spec_1_0(cls, value: str) -> str:
        if value != "1.0":
            raise ValueError(f"only CloudEvents specversion 1.0 is supported, got {value!r}")
        return value

    @field_validator("type")
    @classmethod
    def _versioned_type(cls, value: str) -> str:
        if not EVENT_TYPE_PATTERN.fullmatch(value):
            raise ValueError(
                f"an event type is dotted lowercase ending in its version, e.g. "
                f"'orders.order.created.v1', got {value!r}"
            )
        return value

    @classmethod
    def create(
        cls,
        type: str,
        data: BaseModel,
        *,
        subject: str | None = None,
        source: str = "unset",
        id: str | None = None,
        **extensions: Any,
    ) -> CloudEvent:
        """A new event with a fresh id and the current UTC time; ``data`` is a pydantic model."""
        return cls(
            id=id or uuid.uuid4().hex,
            source=source,
            type=type,
            subject=subject,
            time=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            data=data.model_dump(mode="json"),
            **extensions,
        )

    def to_json(self) -> str:
        """The structured-mode body (attributes that are unset are left out)."""
        return self.model_dump_json(exclude_none=True)

    def signed_fields(self) -> dict[str, Any]:
        """Every attribute except the signature itself: what an HMAC covers."""
        return self.model_dump(mode="json", exclude_none=True, exclude={"signature"})

    def canonical_bytes(self) -> bytes:
        """The signed fields as canonical JSON (sorted keys, no spaces, UTF-8)."""
        return json.dumps(
            self.signed_fields(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()


def parse_event(body: bytes | str) -> CloudEvent:
    """Parse a structured-mode body; anything malformed raises :class:`EventRejected`."""
    try:
        return CloudEvent.model_validate_json(body)
    except ValueError as exc:
        # The pydantic message names the field and the rule, never a key.
        first = str(exc).splitlines()[:3]
        raise EventRejected(
            "the message is not a valid CloudEvents 1.0 JSON envelope: " + " ".join(first),
            reason="malformed",
        ) from None
