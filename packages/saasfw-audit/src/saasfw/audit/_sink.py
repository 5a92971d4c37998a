"""What a sink is: something that durably takes a batch of encoded records."""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from typing import Any


class EncodedRecord:
    """One audit record ready for every sink: its JSON line, and the record as a dict.

    The dict is parsed from the line on first use, so sinks that only need the bytes (the
    file sink) never pay for it.
    """

    __slots__ = ("_record", "line", "mac", "producer", "seq")

    def __init__(
        self,
        line: bytes,
        seq: int,
        producer: str,
        mac: str | None,
        record: dict[str, Any] | None = None,
    ) -> None:
        self.line = line
        self.seq = seq
        self.producer = producer
        self.mac = mac
        self._record = record

    @property
    def record(self) -> dict[str, Any]:
        if self._record is None:
            self._record = json.loads(self.line)
        return self._record

    @classmethod
    def from_line(cls, line: bytes) -> EncodedRecord:
        record = json.loads(line)
        return cls(
            line if line.endswith(b"\n") else line + b"\n",
            record["seq"],
            record["producer"],
            record.get("mac"),
            record,
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
