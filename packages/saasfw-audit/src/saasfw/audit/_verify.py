"""Verify a chained log against its key and signed checkpoints, locating every problem."""

from __future__ import annotations

import hmac
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from saasfw.audit._chain import GENESIS, ChainKey, read_checkpoints, split_chained_line
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


def _scan(
    files: Sequence[Path], report: VerifyReport, progress: ProgressCallback | None
) -> dict[str, list[_Entry]]:
    total = sum(p.stat().st_size for p in files)
    done = 0
    last_reported = -1
    per_producer: dict[str, list[_Entry]] = {}
    last_producer: str | None = None
    for fi, path in enumerate(files):
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                done += len(raw)
                if progress is not None and done * 100 // max(total, 1) != last_reported:
                    last_reported = done * 100 // max(total, 1)
                    progress(done, total)
                if not raw.strip():
                    continue
                name = str(path)
                if not raw.endswith(b"\n") and fi == len(files) - 1:
                    report.findings.append(
                        Finding("truncated", "the last line is incomplete (torn)", name, lineno)
                    )
                    continue
                parts = split_chained_line(raw)
                producer: str | None = None
                seq: int | None = None
                try:
                    body = json.loads(parts[0] if parts else raw)
                    producer, seq = str(body["producer"]), int(body["seq"])
                except (ValueError, KeyError, TypeError):
                    m_seq = _SEQ_RE.search(raw)
                    m_prod = _PRODUCER_RE.search(raw)
                    seq = int(m_seq.group(1)) if m_seq else None
                    producer = m_prod.group(1).decode("utf-8", "replace") if m_prod else None
                    producer = producer or last_producer
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
                per_producer.setdefault(producer, []).append(
                    _Entry(name, lineno, seq, parts[0], parts[1])
                )
    return per_producer


def _check_producer(
    producer: str,
    entries: list[_Entry],
    chain: ChainKey,
    report: VerifyReport,
    anchors: dict[int, str],
) -> dict[int, _Entry]:
    in_order = sorted(entries, key=lambda e: e.seq)
    # Reordering: a record whose place in the file differs from its place by sequence.
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
    by_seq: dict[int, _Entry] = {}
    prev: _Entry | None = None
    candidates: tuple[bytes, ...] = ()
    run: list[_Entry] = []

    def close_run() -> None:
        if not run:
            return
        first, last = run[0], run[-1]
        if len(run) == 1:
            report.findings.append(
                Finding(
                    "modified",
                    "content or mac altered (mac does not verify)",
                    first.file,
                    first.line,
                    first.seq,
                    producer,
                )
            )
        else:
            report.findings.append(
                Finding(
                    "rechained",
                    f"{len(run)} consecutive records, seq {first.seq}..{last.seq} "
                    f"(to {last.file}:{last.line}), fail the chain: rewritten and re-chained "
                    "without the chain key",
                    first.file,
                    first.line,
                    first.seq,
                    producer,
                )
            )
        run.clear()

    for e in in_order:
        if e.seq in by_seq:
            report.findings.append(
                Finding("duplicate", f"seq {e.seq} appears twice", e.file, e.line, e.seq, producer)
            )
            continue
        by_seq[e.seq] = e
        try:
            stored = bytes.fromhex(e.mac_hex)
        except ValueError:
            stored = b""
        if prev is None:
            anchor = anchors.get(e.seq - 1)
            if e.seq == 1:
                check, candidates = True, (GENESIS,)
            elif anchor is not None:
                check, candidates = True, (bytes.fromhex(anchor),)
            else:
                report.findings.append(
                    Finding(
                        "deleted",
                        f"seq 1..{e.seq - 1} missing from the start, and no signed retention "
                        "anchor covers them",
                        e.file,
                        e.line,
                        e.seq,
                        producer,
                    )
                )
                check, candidates = False, ()
        elif e.seq != prev.seq + 1:
            report.findings.append(
                Finding(
                    "deleted",
                    f"seq {prev.seq + 1}..{e.seq - 1} missing "
                    f"({e.seq - prev.seq - 1} records) before this line",
                    e.file,
                    e.line,
                    e.seq,
                    producer,
                )
            )
            check = False
        else:
            check = True
        if check:
            computed = [chain.mac(c, e.canonical) for c in candidates]
            if any(hmac.compare_digest(c, stored) for c in computed):
                close_run()
                candidates = (stored,)
            else:
                run.append(e)
                # The next record may still verify against this record's recomputed mac
                # (only this record was altered) or its stored one (only its content was).
                candidates = ((stored,) if stored else ()) + (computed[0],)
        else:
            close_run()
            candidates = (stored,)
        prev = e
    close_run()
    if in_order:
        report.producers[producer] = (in_order[0].seq, in_order[-1].seq)
    return by_seq


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
        progress: called with (bytes read, bytes total) as the scan advances.
    """
    report = VerifyReport()
    files = log_segments(path)
    if not files:
        report.findings.append(
            Finding("truncated", "the log does not exist or is empty", str(path))
        )
        return report
    chain = ChainKey(chain_key)
    per_producer = _scan(files, report, progress)
    good: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    if public_key is not None and checkpoints_path is not None:
        good, bad = read_checkpoints(checkpoints_path, public_key)
    anchors: dict[str, dict[int, str]] = {}
    for cp in good:
        if cp.get("anchor"):
            anchors.setdefault(cp["producer"], {})[int(cp["seq"])] = cp["mac"]
    heads = {
        p: _check_producer(p, es, chain, report, anchors.get(p, {}))
        for p, es in per_producer.items()
    }
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
            entries = heads.get(producer, {})
            top = max(entries) if entries else 0
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
            entry = entries.get(seq)
            if entry is None:
                continue  # reported as deleted
            if not hmac.compare_digest(entry.mac_hex, mac_hex):
                since = last_ok.get(producer, 0)
                report.findings.append(
                    Finding(
                        "rechained",
                        f"the chain head at seq {seq} differs from the signed checkpoint: "
                        f"records in seq {since + 1}..{seq} were rewritten and re-chained",
                        entry.file,
                        entry.line,
                        seq,
                        producer,
                    )
                )
            else:
                last_ok[producer] = seq
    return report
