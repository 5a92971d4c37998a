"""Property: any single-byte change anywhere in a chained log is detected."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from saasfw.audit import Actor, AuditLogger, FileSink, verify_log

KEY = b"p" * 32


def _log() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.jsonl"
        logger = AuditLogger([FileSink(path, fsync=False)], producer_id="prop", chain_key=KEY)
        logger.start()
        for i in range(30):
            logger.record("x.y", actor=Actor(f"u{i}", tenant="t"), details={"i": i, "s": "é\n"})
        logger.close()
        return path.read_bytes()


LOG = _log()


@settings(max_examples=150, deadline=None)
@given(position=st.integers(0, len(LOG) - 1), value=st.integers(0, 255))
def test_any_single_byte_change_is_detected(position: int, value: int) -> None:
    if LOG[position] == value:
        return
    tampered = bytearray(LOG)
    tampered[position] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.jsonl"
        path.write_bytes(bytes(tampered))
        report = verify_log(path, chain_key=KEY)
    assert not report.ok
    line = LOG.count(b"\n", 0, position) + 1
    located = {f.line for f in report.findings}
    # Located at the changed line, or (a newline turned into another byte merges two
    # lines) at the line that absorbed it, or at the end when the tail was cut.
    assert located & {line, line + 1, line - 1} or any(
        f.kind in {"truncated", "deleted"} for f in report.findings
    )
