"""Verify chained JSON Lines logs against the chain key and signed checkpoints, per producer.

Locates every problem; the chain check and the checkpoint checks are shared with the SQL
table's verifier (``_verify_sql``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from saasfw.audit._chain import ChainKey
from saasfw.audit._chaincheck import (
    LEGACY_PRODUCER,
    ChainChecker,
    Checkpoints,
    Entry,
    Finding,
    VerifyReport,
    check_checkpoints,
    load_checkpoints,
    report_reordering,
)
from saasfw.audit._encoder import split_chained_line
from saasfw.audit._file import log_segments

ProgressCallback = Callable[[int, int], None]
_SEQ_RE = re.compile(rb'"seq":(\d+)')
_PRODUCER_RE = re.compile(rb'"producer":"([^"\\]*)"')

__all__ = ["Finding", "VerifyReport", "verify_log", "verify_logs"]


@dataclass(slots=True)
class _Shape:
    """What pass 1 learnt about a producer: is its file order simply seq+1 each time?"""

    first: int
    last: int
    regular: bool = True


class _Progress:
    """Reports (bytes read, bytes to read) once per percent over both passes."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        self._last = -1

    def advance(self, n: int) -> None:
        self.done += n
        if self.callback is not None:
            pct = self.done * 100 // max(self.total, 1)
            if pct != self._last:
                self._last = pct
                self.callback(self.done, self.total)


def _lines(
    files: Sequence[tuple[Path, bool]], progress: _Progress
) -> Iterator[tuple[str, int, bytes, bool]]:
    """(file, line number, line, whether the file is a log's active file) per line."""
    for path, is_last in files:
        name = str(path)
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                progress.advance(len(raw))
                if raw.strip():
                    yield name, lineno, raw, is_last


def _parse(
    raw: bytes, last_producer: str | None
) -> tuple[str | None, int | None, tuple[bytes, str] | None]:
    parts = split_chained_line(raw)
    try:
        body = json.loads(parts[0] if parts else raw)
        return str(body.get("producer", LEGACY_PRODUCER)), int(body["seq"]), parts
    except (ValueError, KeyError, TypeError):
        m_seq = _SEQ_RE.search(raw)
        m_prod = _PRODUCER_RE.search(raw)
        seq = int(m_seq.group(1)) if m_seq else None
        producer = m_prod.group(1).decode("utf-8", "replace") if m_prod else None
        return producer if producer is not None else last_producer, seq, parts


def _scan_shapes(
    files: Sequence[tuple[Path, bool]], report: VerifyReport, progress: _Progress
) -> dict[str, _Shape]:
    """Pass 1: parse every line, report what is unreadable, learn each producer's shape."""
    shapes: dict[str, _Shape] = {}
    last_producer: str | None = None
    for name, lineno, raw, is_last in _lines(files, progress):
        if is_last and not raw.endswith(b"\n"):
            report.findings.append(
                Finding("truncated", "the last line is incomplete (torn)", name, lineno)
            )
            continue
        producer, seq, parts = _parse(raw, last_producer)
        if parts is None or producer is None or seq is None:
            report.findings.append(
                Finding(
                    "unparseable",
                    "the line is not a chained audit record (altered)",
                    name,
                    lineno,
                    seq,
                    producer,
                )
            )
            continue
        last_producer = producer
        report.records += 1
        shape = shapes.get(producer)
        if shape is None:
            shapes[producer] = _Shape(seq, seq)
        else:
            shape.regular = shape.regular and seq == shape.last + 1
            shape.last = seq
    return shapes


def _check_chains(
    files: Sequence[tuple[Path, bool]],
    shapes: dict[str, _Shape],
    chain: ChainKey,
    cps: Checkpoints,
    report: VerifyReport,
    progress: _Progress,
) -> dict[str, ChainChecker]:
    """Pass 2: stream regular producers through the chain check in constant memory; hold
    only the producers whose order is disturbed (a tampered log) to check them by seq."""
    checkers = {
        p: ChainChecker(p, chain, report, cps.anchors.get(p, {}), cps.wanted.get(p, set()))
        for p, shape in shapes.items()
        if shape.regular
    }
    held: dict[str, list[Entry]] = {p: [] for p, shape in shapes.items() if not shape.regular}
    last_producer = None
    for name, lineno, raw, is_last in _lines(files, progress):
        if is_last and not raw.endswith(b"\n"):
            continue
        producer, seq, parts = _parse(raw, last_producer)
        if parts is None or producer is None or seq is None:
            continue
        last_producer = producer
        entry = Entry(name, lineno, seq, parts[0], parts[1])
        checker = checkers.get(producer)
        if checker is not None:
            checker.feed(entry)
        else:
            held[producer].append(entry)
    for producer, entries in held.items():
        checker = ChainChecker(producer, chain, report, cps.anchors.get(producer, {}), None)
        for entry in report_reordering(producer, entries, report):
            checker.feed(entry)
        checkers[producer] = checker
    for checker in checkers.values():
        checker.finish()
    return checkers


def verify_logs(
    paths: Sequence[str | os.PathLike[str]],
    *,
    chain_key: bytes,
    public_key: Any = None,
    checkpoints_paths: Sequence[str | os.PathLike[str]] = (),
    progress: ProgressCallback | None = None,
) -> VerifyReport:
    """Verify several logs (e.g. one per replica) and their checkpoints, per producer.

    Each producer's records form their own chain wherever they are: in one file, spread
    over several, or interleaved with other producers' in a shared one. Each chain is
    checked on its own; with ``public_key``, each producer's chain must also end in a final
    signed checkpoint (a clean shutdown), else an ``unterminated`` finding names the
    producer and its last sequence number.

    Args:
        paths: the active log files; each one's ``<path>.NNNNNN`` segments are read first.
        chain_key: the HMAC key of the chains.
        public_key: the Ed25519 public key of the checkpoints (None: chains only).
        checkpoints_paths: the checkpoint files (used with ``public_key``).
        progress: called with (bytes read, bytes to read) as the scan advances; the logs
            are read twice, so the total is twice their size.
    """
    report = VerifyReport()
    files: list[tuple[Path, bool]] = []
    for path in paths:
        segments = log_segments(path)
        if not segments:
            report.findings.append(
                Finding("truncated", "the log does not exist or is empty", str(path))
            )
        files.extend((seg, i == len(segments) - 1) for i, seg in enumerate(segments))
    if not files:
        return report
    chain = ChainKey(chain_key)
    cps = Checkpoints()
    if public_key is not None and checkpoints_paths:
        cps = load_checkpoints(checkpoints_paths, public_key, report)
    total = sum(p.stat().st_size for p, _ in files)
    counter = _Progress(progress, 2 * total)
    shapes = _scan_shapes(files, report, counter)
    checkers = _check_chains(files, shapes, chain, cps, report, counter)
    if public_key is not None and checkpoints_paths:
        check_checkpoints(checkers, cps, report)
    return report


def verify_log(
    path: str | os.PathLike[str],
    *,
    chain_key: bytes,
    public_key: Any = None,
    checkpoints_path: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
) -> VerifyReport:
    """Verify a log (the active file and its rotated segments) and its checkpoints.

    Args:
        path: the active log file; ``<path>.NNNNNN`` segments are read first, in order.
        chain_key: the HMAC key of the chain.
        public_key: the Ed25519 public key of the checkpoints (None: chain only).
        checkpoints_path: the checkpoint file (needed with ``public_key``).
        progress: called with (bytes read, bytes to read) as the scan advances; the log is
            read twice, so the total is twice its size.

    The log may hold several producers' chains; see :func:`verify_logs`.
    """
    return verify_logs(
        [path],
        chain_key=chain_key,
        public_key=public_key,
        checkpoints_paths=[checkpoints_path] if checkpoints_path is not None else (),
        progress=progress,
    )
