"""JSON Lines file sink: append all or nothing, fsync per batch, rotate, repair a torn tail."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from saasfw.audit._append import AppendFailedError, append_all_or_nothing, describe, rollback
from saasfw.audit._chain import CheckpointWriter
from saasfw.audit._errors import AuditSinkError
from saasfw.audit._sink import AuditSink, EncodedBatch, EncodedRecord

_SEGMENT_RE = re.compile(r"\.(\d{6,})$")
_log = logging.getLogger("saasfw.audit")


def log_segments(path: str | os.PathLike[str]) -> list[Path]:
    """The files of a rotated log in write order: rotated segments, then the active file."""
    active = Path(path)
    rotated: list[tuple[int, Path]] = []
    if active.parent.is_dir():
        for child in active.parent.iterdir():
            if child.name.startswith(active.name + "."):
                m = _SEGMENT_RE.search(child.name)
                if m and child.name == f"{active.name}.{m.group(1)}":
                    rotated.append((int(m.group(1)), child))
    files = [p for _, p in sorted(rotated)]
    if active.exists():
        files.append(active)
    return files


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def repair_torn_tail(path: Path) -> int:
    """Cut an incomplete last line (a crash mid-write) and keep it in ``<path>.torn``.

    Returns the number of bytes removed. Only the bytes after the last newline are removed:
    every complete line stays.
    """
    if not path.exists():
        return 0
    with path.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        pos = size
        keep = 0
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            fh.seek(pos)
            chunk = fh.read(step)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                keep = pos + idx + 1
                break
        fh.seek(keep)
        torn = fh.read()
        with path.with_name(path.name + ".torn").open("ab") as quarantine:
            quarantine.write(torn + b"\n")
            quarantine.flush()
            os.fsync(quarantine.fileno())
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return size - keep


def reverse_lines(path: Path, *, stop: int = 0) -> Iterator[bytes]:
    """The non-empty lines of ``path`` from the last one back, not reading before ``stop``."""
    with path.open("rb") as fh:
        pos = fh.seek(0, os.SEEK_END)
        rest = b""
        while pos > stop:
            step = min(65536, pos - stop)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + rest
            lines = data.split(b"\n")
            rest = lines[0]
            for line in reversed(lines[1:]):
                if line:
                    yield line
        if rest:
            yield rest


class FileSink(AuditSink):
    """Appends records as JSON lines, fsyncing each batch before acknowledging it.

    A batch is appended all or nothing: when the write or the fsync fails (a full disk, an
    I/O error, a short write) the file is cut back to its last whole record and fsynced, the
    write raises ``AuditSinkError`` and the delivery channel retries the same bytes, so the
    file parses and verifies end to end at every moment and writes resume by themselves
    once the disk has room again.

    Args:
        path: the active file; rotated segments are ``<path>.000001``, ``<path>.000002``...
        max_bytes: rotate once the active file reaches this size (0: never).
        rotate_seconds: rotate once the active file is this old and not empty (0: never).
        fsync: fsync each batch (turning it off gives up the durable guarantee).
        checkpoints: signs the chain head after batches, apart from the log.
    """

    name = "file"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 256 * 1024 * 1024,
        rotate_seconds: float = 0,
        fsync: bool = True,
        checkpoints: CheckpointWriter | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.rotate_seconds = rotate_seconds
        self.fsync = fsync
        self.checkpoints = checkpoints
        self.repaired_bytes = 0
        self.rolled_back_writes = 0
        self.checkpoint_failures = 0
        self._fd: int | None = None
        self._opened = False
        # True while the active file may end in a fragment a failed rollback left behind.
        self._dirty = False
        self._size = 0
        self._opened_at = 0.0
        self._heads: dict[str, int] = {}

    def open(self) -> None:
        if self._opened:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_bytes = repair_torn_tail(self.path)
        self._open_active()
        self._opened = True

    def _open_active(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._size = os.fstat(self._fd).st_size
        self._opened_at = time.monotonic()
        _fsync_dir(self.path.parent)

    def last_link(self, producer: str) -> tuple[int, str] | None:
        link = self._read_last_link(producer)
        # Seeds the duplicate check of _unwritten (a later write already knows better).
        self._heads.setdefault(producer, link[0] if link is not None else 0)
        return link

    def _read_last_link(self, producer: str) -> tuple[int, str] | None:
        for segment in reversed(log_segments(self.path)):
            for line in reverse_lines(segment):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("producer") == producer and "mac" in record:
                    return int(record["seq"]), str(record["mac"])
        return None

    def write(self, batch: Sequence[EncodedRecord]) -> None:
        if not self._opened:
            raise AuditSinkError("the file sink is not open", where=str(self.path))
        if isinstance(batch, EncodedBatch):
            raw = b"".join(batch.lines)
            link = batch.last_link()
        else:
            records = self._unwritten(batch)
            raw = b"".join(r.line for r in records)
            link = (records[-1].producer, records[-1].seq, records[-1].mac) if records else None
        try:
            if self._fd is None:  # a rotation renamed the file but could not open a new one
                self._open_active()
            fd: int = self._fd  # type: ignore[assignment]
            if self._dirty:
                rollback(fd, self._size)
                self._dirty = False
            if self._size and (
                (self.max_bytes and self._size >= self.max_bytes)
                or (
                    self.rotate_seconds
                    and time.monotonic() - self._opened_at >= self.rotate_seconds
                )
            ):
                self._rotate()
                fd = self._fd  # type: ignore[assignment]
            if raw:
                append_all_or_nothing(fd, raw, self._size, fsync=self.fsync)
        except AppendFailedError as exc:
            self._dirty = not exc.rolled_back
            self.rolled_back_writes += 1
            state = "cut back to its last whole record" if exc.rolled_back else "left dirty"
            raise AuditSinkError(
                f"write failed: {describe(exc)}; the file was {state} and the batch will be "
                "retried; free disk space or fix the device",
                where=str(self.path),
            ) from exc
        except OSError as exc:
            raise AuditSinkError(
                f"write failed: {describe(exc)}; the batch will be retried", where=str(self.path)
            ) from exc
        self._size += len(raw)
        if link is not None:
            self._heads[link[0]] = link[1]
            if self.checkpoints is not None and link[2] is not None:
                self._checkpoint(link[0], link[1], link[2], len(batch))

    def _unwritten(self, records: Sequence[EncodedRecord]) -> Sequence[EncodedRecord]:
        """Records not already in the file: a spill file replayed after a crash may repeat
        what had landed, and the file keeps one copy of each sequence number."""
        if not records:
            return records
        producer = records[0].producer
        head = self._heads.get(producer)
        if head is None:
            self.last_link(producer)
            head = self._heads[producer]
        if records[0].seq > head:
            return records
        return [r for r in records if r.producer != producer or r.seq > head]

    def _checkpoint(self, producer: str, seq: int, mac_hex: str, count: int) -> None:
        # The batch is durable already: a checkpoint that cannot be written (its volume is
        # full too) must not fail the batch, or the retry would append it a second time.
        # The writer keeps the head and signs it on a later batch or at shutdown.
        if self.checkpoints is None:
            return
        try:
            self.checkpoints.observe(producer, seq, mac_hex, count)
        except OSError as exc:
            self.checkpoint_failures += 1
            _log.warning("audit checkpoint not written (%s); retried later", describe(exc))

    def _rotate(self) -> None:
        if self._fd is None:  # an internal invariant, not an input check
            raise RuntimeError("saasfw.audit: self._fd is unset")
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        existing = log_segments(self.path)[:-1]
        last = int(_SEGMENT_RE.search(existing[-1].name).group(1)) if existing else 0  # type: ignore[union-attr]
        os.rename(self.path, self.path.with_name(f"{self.path.name}.{last + 1:06d}"))
        self._open_active()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        self._opened = False
        if fd is not None:
            try:
                if self._dirty:
                    rollback(fd, self._size)
                    self._dirty = False
                os.fsync(fd)
            finally:
                os.close(fd)
        if self.checkpoints is not None:
            self.checkpoints.write_now(final=True)  # a clean shutdown ends the chain

    def __repr__(self) -> str:
        return f"FileSink(path={str(self.path)!r})"
