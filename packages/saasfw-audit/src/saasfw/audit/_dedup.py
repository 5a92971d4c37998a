"""The ids of the events a file log holds lately: how redelivered outbox events are dropped.

The outbox relay delivers at least once: a crash after the sinks stored an event and before
its outbox row was deleted delivers it again. The pipeline drops such an event before it is
sequenced and chained (a dropped *line* would break the chain), by its id: the last
``window`` ids of events relayed through this logger, seeded at start-up from the tail of
the file log, which is the chain's anchor and outlives the process.
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import Any

from saasfw.audit._file import log_segments, reverse_lines

__all__ = ["DEFAULT_WINDOW", "RecentIds", "SealedDetails"]

DEFAULT_WINDOW = 65_536
"""Far above what a crash can leave delivered-but-not-deleted (a relay batch per key)."""

# Every record line starts {"v":1,"id":"<uuid>" (the logger writes keys in a fixed order).
_ID = re.compile(rb'^\{"v":\d+,"id":"([^"]{1,64})"')


class SealedDetails(dict[str, Any]):
    """A relayed event's details, encrypted when the event was staged.

    The pipeline recognises a relayed event by this type: it does not encrypt its fields
    again, and it drops the event when its id is among the recent ones.
    """

    __slots__ = ()


RESEND_WINDOW = 2_048
"""Lines kept from the file log's tail: a crash can leave an event in the file but not yet
in the SQL sink, and the redelivery then goes to the idempotent sinks only."""


class RecentIds:
    """A bounded set of event ids, oldest forgotten first. Used by the pipeline thread only.

    ``lines`` holds the file log's line of the newest ids read from its tail at start-up.
    """

    __slots__ = ("_ids", "_order", "lines", "window")

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"the dedup window holds at least 1 id, got {window}")
        self.window = window
        self._ids: set[str] = set()
        self._order: deque[str] = deque()
        self.lines: dict[str, bytes] = {}

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def discard(self, event_id: str) -> None:
        """Forget ``event_id`` (it was not stored after all: a redelivery must be kept)."""
        self._ids.discard(event_id)

    def add(self, event_id: str) -> None:
        if event_id in self._ids:
            return
        self._ids.add(event_id)
        self._order.append(event_id)
        if len(self._order) > self.window:
            self._ids.discard(self._order.popleft())

    @classmethod
    def from_file_log(cls, path: str | Path, window: int = DEFAULT_WINDOW) -> RecentIds:
        """The ids of the last ``window`` records of the file log (all segments, newest first)."""
        newest_first: list[str] = []
        lines: dict[str, bytes] = {}
        for segment in reversed(log_segments(path)):
            if len(newest_first) >= window:
                break
            for line in reverse_lines(segment):
                match = _ID.match(line)
                if match is not None:
                    event_id = match.group(1).decode("ascii", "replace")
                    newest_first.append(event_id)
                    if len(lines) < RESEND_WINDOW:
                        lines[event_id] = line
                    if len(newest_first) >= window:
                        break
        recent = cls(window)
        recent.lines = lines
        for event_id in reversed(newest_first):
            recent.add(event_id)
        return recent
