"""What a sink is: something that durably takes a batch of encoded records."""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from typing import Any


class EncodedRecord:
    """One audit record ready for every sink: the record dict and its JSON line."""

    __slots__ = ("line", "mac", "record", "seq")

    def __init__(self, record: dict[str, Any], line: bytes, seq: int, mac: str | None) -> None:
        self.record = record
        self.line = line
        self.seq = seq
        self.mac = mac

    @classmethod
    def from_line(cls, line: bytes) -> EncodedRecord:
        record = json.loads(line)
        return cls(
            record, line if line.endswith(b"\n") else line + b"\n", record["seq"], record.get("mac")
        )


class AuditSink(abc.ABC):
    """A destination for audit records.

    ``write`` is called from the sink's own delivery thread with batches in order. It must
    raise when the batch was not stored; the delivery policy then retries with backoff, so a
    sink should tolerate receiving a batch again (at-least-once).
    """

    name: str = "sink"

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire resources; called once by the logger before the first write."""

    @abc.abstractmethod
    def write(self, batch: Sequence[EncodedRecord]) -> None:
        """Store the batch, or raise."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; called once at logger shutdown after the last write."""

    def last_link(self, producer: str) -> tuple[int, str] | None:
        """The (sequence, mac) of the producer's last stored record, for chain resumption."""
        return None
