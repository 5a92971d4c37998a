"""The per-producer chain checks shared by the verifiers of the file logs and the SQL table.

A producer's records, fed in sequence order, are checked against the chain key
(:class:`ChainChecker`); its chain is then matched against the producer's signed
checkpoints: truncated tails, re-chained ranges, and chains that end without a final
checkpoint (a killed producer).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from saasfw.audit._chain import GENESIS, ChainKey, read_checkpoints

LEGACY_PRODUCER = ""
"""The producer of a record written before records named their producer."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: ``kind`` is modified, deleted, reordered, truncated, rechained,
    duplicate, unparseable or bad_checkpoint (tampering or damage), or unterminated (a
    producer's chain that ends without a final signed checkpoint: a killed producer)."""

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

    @property
    def tampered(self) -> bool:
        """Whether any finding is more than an unterminated chain (tampering or damage)."""
        return any(f.kind != "unterminated" for f in self.findings)

    def merge(self, other: VerifyReport, *, prefix: str = "sql:") -> None:
        """Add another verification's outcome (the SQL table's to the files', say).

        Its producers are listed under ``prefix``; a finding both report (a bad line of the
        same checkpoint file) is kept once.
        """
        self.records += other.records
        self.checkpoints = max(self.checkpoints, other.checkpoints)
        for p, span in other.producers.items():
            self.producers[prefix + p] = span
        seen = set(self.findings)
        self.findings.extend(f for f in other.findings if f not in seen)

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
class Entry:
    """One record to check: where it is, its sequence number, canonical bytes and mac."""

    file: str
    line: int | None
    seq: int
    canonical: bytes
    mac_hex: str


class ChainChecker:
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
        self.kept: dict[int, tuple[str, int | None, str]] = {}
        self.first: int | None = None
        self.top = 0
        self.prev_seq: int | None = None
        self.candidates: tuple[bytes, ...] = ()
        self.run: list[tuple[str, int | None, int]] = []  # first and last (file, line, seq)
        self.run_len = 0
        self.last_where: tuple[str | None, int | None] = (None, None)

    def _finding(self, kind: str, message: str, e: Entry) -> None:
        self.report.findings.append(Finding(kind, message, e.file, e.line, e.seq, self.producer))

    def _close_run(self) -> None:
        if not self.run_len:
            return
        (ffile, fline, fseq), (lfile, lline, lseq) = self.run[0], self.run[-1]
        to = f"{lfile}:{lline}" if lline is not None else lfile
        if self.run_len == 1:
            msg = "content or mac altered (mac does not verify)"
            self.report.findings.append(Finding("modified", msg, ffile, fline, fseq, self.producer))
        else:
            msg = (
                f"{self.run_len} consecutive records, seq {fseq}..{lseq} (to {to}), "
                "fail the chain: rewritten and re-chained without the chain key"
            )
            self.report.findings.append(
                Finding("rechained", msg, ffile, fline, fseq, self.producer)
            )
        self.run = []
        self.run_len = 0

    def feed(self, e: Entry) -> None:
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
        if e.seq >= self.top:
            self.top = e.seq
            self.last_where = (e.file, e.line)
        if self.keep is None or e.seq in self.keep:
            self.kept[e.seq] = (e.file, e.line, e.mac_hex)

    def finish(self) -> None:
        self._close_run()
        if self.first is not None:
            self.report.producers[self.producer] = (self.first, self.top)


def report_reordering(producer: str, entries: list[Entry], report: VerifyReport) -> list[Entry]:
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


@dataclass(slots=True)
class Checkpoints:
    """The signed checkpoints of one or more checkpoint files, by producer."""

    count: int = 0
    anchors: dict[str, dict[int, str]] = field(default_factory=dict)
    wanted: dict[str, set[int]] = field(default_factory=dict)
    heads: list[dict[str, Any]] = field(default_factory=list)


def load_checkpoints(
    paths: Sequence[str | os.PathLike[str]], public_key: Any, report: VerifyReport
) -> Checkpoints:
    """Read and check the signatures of every checkpoint file; report the bad lines."""
    cps = Checkpoints()
    for path in paths:
        good, bad = read_checkpoints(path, public_key)
        for lineno, problem in bad:
            report.findings.append(Finding("bad_checkpoint", problem, str(path), lineno))
        cps.count += len(good)
        for cp in good:
            producer = str(cp.get("producer", LEGACY_PRODUCER))
            if cp.get("anchor"):
                cps.anchors.setdefault(producer, {})[int(cp["seq"])] = cp["mac"]
            else:
                cps.wanted.setdefault(producer, set()).add(int(cp["seq"]))
                cps.heads.append(cp)
    report.checkpoints = cps.count
    return cps


def check_checkpoints(
    checkers: Mapping[str, ChainChecker], cps: Checkpoints, report: VerifyReport
) -> None:
    """Match each producer's chain against its signed heads: a head past the chain's end is
    a truncated tail, a head that differs is a re-chained range."""
    last_ok: dict[str, int] = {}
    for cp in cps.heads:
        producer, seq, mac_hex = str(cp.get("producer", LEGACY_PRODUCER)), int(cp["seq"]), cp["mac"]
        found = checkers.get(producer)
        top = found.top if found is not None else 0
        if seq > top:
            report.findings.append(
                Finding(
                    "truncated",
                    f"the log ends at seq {top} but a signed checkpoint covers seq {seq}: "
                    f"{seq - top} or more records removed from the end",
                    found.last_where[0] if found is not None else None,
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
    _check_terminated(checkers, cps, report)


def _check_terminated(
    checkers: Mapping[str, ChainChecker], cps: Checkpoints, report: VerifyReport
) -> None:
    """Flag each chain that ends without a final checkpoint: its producer was killed.

    A producer signs a final checkpoint of its head when it shuts down cleanly. A chain
    whose last record is not covered by one stopped mid-way (SIGKILL, OOM, power loss), or
    its producer still runs: no tampering is proven, but records it made after its last
    signed checkpoint cannot be proven complete. Checkpoints written before the final flag
    existed count as final when they cover the last record.
    """
    covering: dict[str, list[dict[str, Any]]] = {}
    for cp in cps.heads:
        covering.setdefault(str(cp.get("producer", LEGACY_PRODUCER)), []).append(cp)
    for producer, checker in checkers.items():
        if checker.first is None:
            continue
        heads = covering.get(producer, [])
        if any(int(cp["seq"]) > checker.top for cp in heads):
            continue  # reported as truncated
        if any(int(cp["seq"]) == checker.top and cp.get("final", True) for cp in heads):
            continue
        signed = max((int(cp["seq"]) for cp in heads), default=0)
        since = f"after its last signed checkpoint (seq {signed})" if signed else "at all"
        report.findings.append(
            Finding(
                "unterminated",
                f"the chain ends at seq {checker.top} without a final signed checkpoint: the "
                "producer stopped without a clean shutdown (killed or crashed) or is still "
                f"running; its records are not proven complete {since}",
                checker.last_where[0],
                checker.last_where[1],
                checker.top,
                producer,
            )
        )
