"""A durable record call waits for the sinks that hold batches, whatever the other sinks do."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from saasfw.audit import AuditLogger, AuditSink, Delivery, EncodedRecord


class HeldSink(AuditSink):
    def __init__(self, name: str, *, held: bool) -> None:
        self.name = name
        self.gate = threading.Event()
        if not held:
            self.gate.set()
        self.ids: list[str] = []

    def write(self, batch: Sequence[EncodedRecord]) -> None:
        self.gate.wait(30)
        self.ids.extend(r.record["id"] for r in batch)


def test_a_fast_drop_sink_does_not_acknowledge_for_a_held_block_sink() -> None:
    slow = HeldSink("slow", held=True)
    fast = HeldSink("fast", held=False)
    logger = AuditLogger([slow, Delivery(fast, "drop")], durable=True, batch_interval=0.005)
    logger.start()
    returned: list[str] = []
    caller = threading.Thread(target=lambda: returned.append(logger.record("a.b")))
    caller.start()
    deadline = time.monotonic() + 30
    while not fast.ids:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    caller.join(0.2)
    assert caller.is_alive()  # the drop sink's write is no acknowledgement
    assert not returned
    slow.gate.set()
    caller.join(30)
    assert returned == fast.ids == slow.ids
    assert logger.close().complete
