"""Verify a chained log against its key and signed checkpoints, locating every problem."""

from __future__ import annotations

import hmac
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saasfw.audit._chain import GENESIS, ChainKey, read_checkpoints
from saasfw.audit._encoder import split_chained_line
from saasfw.audit._file import log_segments

ProgressCallback = Callable[[int, int], None]
_SEQ_RE = re.compile(rb'"seq":(\d+)')
_PRODUCER_RE = re.compile(rb'"producer":"([^"\\]*)"')


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: ``kind`` is modified, deleted, reordered, truncated, rechained,
    duplicate, unparseable or bad_checkpoint."""

    kind: str
    message: str
    file: str | None = None
    line: int | None = None
    seq: int | None = None
    producer: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file and self.line else (self.file or "-")
        seq = f" seq={self.seq}" if self.seq is not None else ""
        return f"{self.kind.upper():<13} {where}{seq}  {self.message}"


@dataclass(slots=True)
class VerifyReport:
    """The outcome: ``ok`` only when nothing was found and every record was checked."""

    records: int = 0
    checkpoints: int = 0
    producers: dict[str, tuple[int, int]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "producers": {p: list(r) for p, r in self.producers.items()},
            "findings": [
                {
                    "kind": f.kind,
                    "message": f.message,
                    "file": f.file,
                    "line": f.line,
                    "seq": f.seq,
                    "producer": f.producer,
                }
                for f in self.findings
            ],
        }


@dataclass(slots=True)
class _Entry:
    file: str
    line: int
    seq: int
    canonical: bytes
    mac_hex: str


@dataclass(slots=True)
class _Shape:
    """What pass 1 learnt about a producer: is its file order simply seq+1 each time?"""

    first: int
    last: int
    regular: bool = True


def _lines(
    files: Sequence[Path], progress: ProgressCallback | None, base: int, grand_total: int
) -> Iterator[tuple[str, int, bytes, bool]]:
    done = base
    last_reported = -1
    for fi, path in enumerate(files):
        name = str(path)
        is_last = fi == len(files) - 1
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                done += len(raw)
                if progress is not None:
                    pct = done * 100 // max(grand_total, 1)
                    if pct != last_reported:
                        last_reported = pct
                        progress(done, grand_total)
                if raw.strip():
                    yield name, lineno, raw, is_last


def _parse(
    raw: bytes, last_producer: str | None
) -> tuple[str | None, int | None, tuple[bytes, str] | None]:
    parts = split_chained_line(raw)
    try:
        body = json.loads(parts[0] if parts else raw)
        return str(body["producer"]), int(body["seq"]), parts
    except (ValueError, KeyError, TypeError):
        m_seq = _SEQ_RE.search(raw)
        m_prod = _PRODUCER_RE.search(raw)
        seq = int(m_seq.group(1)) if m_seq else None
        producer = m_prod.group(1).decode("utf-8", "replace") if m_prod else None
        return producer or last_producer, seq, parts


class _ChainChecker:
    """Checks one producer's records fed in sequence order, reporting as it goes.

    Keeps only the links named in ``keep`` (the signed checkpoints' sequence numbers), so a
    regular log is verified in constant memory per producer.
    """

    def __init__(
        self,
        producer: str,
        chain: ChainKey,
        report: VerifyReport,
        anchors: dict[int, str],
        keep: set[int] | None,
    ) -> None:
        self.producer = producer
        self.chain = chain
        self.report = report
        self.anchors = anchors
        self.keep = keep
        self.kept: dict[int, tuple[str, int, str]] = {}
        self.first: int | None = None
        self.top = 0
        self.prev_seq: int | None = None
        self.candidates: tuple[bytes, ...] = ()
        self.run: list[tuple[str, int, int]] = []  # first and last (file, line, seq)
        self.run_len = 0

    def _finding(self, kind: str, message: str, e: _Entry) -> None:
        self.report.findings.append(Finding(kind, message, e.file, e.line, e.seq, self.producer))

    def _close_run(self) -> None:
        if not self.run_len:
            return
        (ffile, fline, fseq), (lfile, lline, lseq) = self.run[0], self.run[-1]
        if self.run_len == 1:
            msg = "content or mac altered (mac does not verify)"
            self.report.findings.append(Finding("modified", msg, ffile, fline, fseq, self.producer))
        else:
            msg = (
                f"{self.run_len} consecutive records, seq {fseq}..{lseq} (to {lfile}:{lline}), "
                "fail the chain: rewritten and re-chained without the chain key"
            )
            self.report.findings.append(
                Finding("rechained", msg, ffile, fline, fseq, self.producer)
            )
        self.run = []
        self.run_len = 0

    def feed(self, e: _Entry) -> None:
        if self.prev_seq is not None and e.seq == self.prev_seq:
            self._finding("duplicate", f"seq {e.seq} appears twice", e)
            return
        try:
            stored = bytes.fromhex(e.mac_hex)
        except ValueError:
            stored = b""
        if self.prev_seq is None:
            self.first = e.seq
            anchor = self.anchors.get(e.seq - 1)
            if e.seq == 1:
                check, self.candidates = True, (GENESIS,)
            elif anchor is not None:
                check, self.candidates = True, (bytes.fromhex(anchor),)
            else:
                self._finding(
                    "deleted",
                    f"seq 1..{e.seq - 1} missing from the start, and no signed retention "
                    "anchor covers them",
                    e,
                )
                check = False
        elif e.seq != self.prev_seq + 1:
            missing = e.seq - self.prev_seq - 1
            self._finding(
                "deleted",
                f"seq {self.prev_seq + 1}..{e.seq - 1} missing ({missing} records) before "
                "this line",
                e,
            )
            check = False
        else:
            check = True
        if check:
            computed = [self.chain.mac(c, e.canonical) for c in self.candidates]
            if any(hmac.compare_digest(c, stored) for c in computed):
                self._close_run()
                self.candidates = (stored,)
            else:
                if self.run_len < 2:
                    self.run.append((e.file, e.line, e.seq))
                else:
                    self.run[-1] = (e.file, e.line, e.seq)
                self.run_len += 1
                # The next record may still verify against this record's recomputed mac
                # (only this record was altered) or its stored one (only its content was).
                self.candidates = ((stored,) if stored else ()) + (computed[0],)
        else:
            self._close_run()
            self.candidates = (stored,)
        self.prev_seq = e.seq
        self.top = max(self.top, e.seq)
        if self.keep is None or e.seq in self.keep:
            self.kept[e.seq] = (e.file, e.line, e.mac_hex)

    def finish(self) -> None:
        self._close_run()
        if self.first is not None:
            self.report.producers[self.producer] = (self.first, self.top)


def _report_reordering(producer: str, entries: list[_Entry], report: VerifyReport) -> list[_Entry]:
    """Flag records whose place in the file differs from their place by sequence."""
    in_order = sorted(entries, key=lambda e: e.seq)
    for file_e, sorted_e in zip(entries, in_order, strict=True):
        if file_e is not sorted_e and file_e.seq != sorted_e.seq:
            report.findings.append(
                Finding(
                    "reordered",
                    f"seq {file_e.seq} is where seq {sorted_e.seq} belongs",
                    file_e.file,
                    file_e.line,
                    file_e.seq,
                    producer,
                )
            )
    return in_order


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
    """
    report = VerifyReport()
    files = log_segments(path)
    if not files:
        report.findings.append(
            Finding("truncated", "the log does not exist or is empty", str(path))
        )
        return report
    chain = ChainKey(chain_key)
    good: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    if public_key is not None and checkpoints_path is not None:
        good, bad = read_checkpoints(checkpoints_path, public_key)
    anchors: dict[str, dict[int, str]] = {}
    wanted: dict[str, set[int]] = {}
    for cp in good:
        if cp.get("anchor"):
            anchors.setdefault(cp["producer"], {})[int(cp["seq"])] = cp["mac"]
        else:
            wanted.setdefault(cp["producer"], set()).add(int(cp["seq"]))
    total = sum(p.stat().st_size for p in files)

    # Pass 1: parse every line, report what is unreadable, learn each producer's shape.
    shapes: dict[str, _Shape] = {}
    last_producer: str | None = None
    for name, lineno, raw, is_last in _lines(files, progress, 0, 2 * total):
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

    # Pass 2: stream regular producers through the chain check in constant memory; hold
    # only the producers whose order is disturbed (a tampered log) to check them by seq.
    checkers = {
        p: _ChainChecker(p, chain, report, anchors.get(p, {}), wanted.get(p, set()))
        for p, shape in shapes.items()
        if shape.regular
    }
    held: dict[str, list[_Entry]] = {p: [] for p, shape in shapes.items() if not shape.regular}
    last_producer = None
    for name, lineno, raw, is_last in _lines(files, progress, total, 2 * total):
        if is_last and not raw.endswith(b"\n"):
            continue
        producer, seq, parts = _parse(raw, last_producer)
        if parts is None or producer is None or seq is None:
            continue
        last_producer = producer
        entry = _Entry(name, lineno, seq, parts[0], parts[1])
        checker = checkers.get(producer)
        if checker is not None:
            checker.feed(entry)
        else:
            held[producer].append(entry)
    for producer, entries in held.items():
        checker = _ChainChecker(producer, chain, report, anchors.get(producer, {}), None)
        for entry in _report_reordering(producer, entries, report):
            checker.feed(entry)
        checkers[producer] = checker
    for checker in checkers.values():
        checker.finish()
    if public_key is not None and checkpoints_path is not None:
        for lineno, problem in bad:
            report.findings.append(
                Finding("bad_checkpoint", problem, str(checkpoints_path), lineno)
            )
        report.checkpoints = len(good)
        last_ok: dict[str, int] = {}
        for cp in good:
            producer, seq, mac_hex = cp["producer"], int(cp["seq"]), cp["mac"]
            if cp.get("anchor"):
                continue  # checked as the start of the producer's chain
            found = checkers.get(producer)
            top = found.top if found is not None else 0
            if seq > top:
                report.findings.append(
                    Finding(
                        "truncated",
                        f"the log ends at seq {top} but a signed checkpoint covers seq {seq}: "
                        f"{seq - top} or more records removed from the end",
                        str(files[-1]),
                        None,
                        seq,
                        producer,
                    )
                )
                continue
            link = found.kept.get(seq) if found is not None else None
            if link is None:
                continue  # reported as deleted
            link_file, link_line, link_mac = link
            if not hmac.compare_digest(link_mac, mac_hex):
                since = last_ok.get(producer, 0)
                report.findings.append(
                    Finding(
                        "rechained",
                        f"the chain head at seq {seq} differs from the signed checkpoint: "
                        f"records in seq {since + 1}..{seq} were rewritten and re-chained",
                        link_file,
                        link_line,
                        seq,
                        producer,
                    )
                )
            else:
                last_ok[producer] = seq
    return report
