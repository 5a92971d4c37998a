"""What a sink is: something that durably takes a batch of encoded records."""

from __future__ import annotations

import abc
import json
from collections.abc import Iterator, Sequence
from typing import Any, overload

from saasfw.audit._encoder import line_mac


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


class EncodedBatch(Sequence[EncodedRecord]):
    """A processed batch as the pipeline produced it: the lines, numbered from ``first_seq``.

    The pipeline only appends each record's line; an ``EncodedRecord`` per line is built on
    first access, once, so the file sink (which writes ``lines`` as they are) never pays for
    an object per event. Sequence numbers are consecutive within a batch.
    """

    __slots__ = ("_records", "chained", "first_seq", "lines", "producer")

    def __init__(self, lines: list[bytes], first_seq: int, producer: str, chained: bool) -> None:
        self.lines = lines
        self.first_seq = first_seq
        self.producer = producer
        self.chained = chained
        self._records: list[EncodedRecord] | None = None

    def _materialise(self) -> list[EncodedRecord]:
        records = self._records
        if records is None:
            producer, seq = self.producer, self.first_seq
            if self.chained:
                records = [
                    EncodedRecord(line, seq + i, producer, line_mac(line))
                    for i, line in enumerate(self.lines)
                ]
            else:
                records = [
                    EncodedRecord(line, seq + i, producer, None)
                    for i, line in enumerate(self.lines)
                ]
            self._records = records
        return records

    def last_link(self) -> tuple[str, int, str | None] | None:
        """(producer, sequence, mac) of the last record, without building the records."""
        if not self.lines:
            return None
        mac = line_mac(self.lines[-1]) if self.chained else None
        return self.producer, self.first_seq + len(self.lines) - 1, mac

    def __len__(self) -> int:
        return len(self.lines)

    @overload
    def __getitem__(self, index: int) -> EncodedRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[EncodedRecord]: ...
    def __getitem__(self, index: int | slice) -> EncodedRecord | list[EncodedRecord]:
        return self._materialise()[index]

    def __iter__(self) -> Iterator[EncodedRecord]:
        return iter(self._materialise())


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
