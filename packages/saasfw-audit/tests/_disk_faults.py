"""Fault injection at the OS boundary: os.write/os.fsync on the files of one directory.

The sink under test runs unchanged on real files; only the kernel's answers are replaced,
for file descriptors that point into ``directory``: a byte budget (a disk that fills, with
the short write and then ENOSPC a real file system gives), a one-off EIO after part of a
write, writes that take fewer bytes than asked, and an fsync, a truncate or a file
creation that fails.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest


class DiskFaults:
    """Installed with ``inject(monkeypatch, directory)``; change the attributes at will."""

    def __init__(self, directory: Path) -> None:
        self.directory = str(directory.resolve())
        self.capacity: int | None = None  # total bytes the directory's files may hold
        self.eio_after: int | None = None  # take this many bytes of the next write, then EIO
        self.fsync_eio = 0  # fail this many of the next fsyncs with EIO
        self.truncate_eio = 0  # fail this many of the next ftruncates with EIO
        self.create_enospc = 0  # fail this many of the next file creations with ENOSPC
        self.max_chunk: int | None = None  # every write takes at most this many bytes
        self.injected = 0
        self._lock = threading.Lock()
        self._write = os.write
        self._fsync = os.fsync
        self._ftruncate = os.ftruncate
        self._open = os.open

    def _targets(self, fd: int) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}").startswith(self.directory + os.sep)
        except OSError:
            return False

    def _used(self) -> int:
        return sum(e.stat().st_size for e in os.scandir(self.directory) if e.is_file())

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if not self._targets(fd):
            return self._write(fd, data)
        with self._lock:
            view = memoryview(data)
            if self.eio_after is not None:
                if self.eio_after == 0:
                    self.eio_after = None
                    self.injected += 1
                    raise OSError(errno.EIO, os.strerror(errno.EIO))
                take = min(self.eio_after, len(view))
                self.eio_after -= take
                return self._write(fd, view[:take])
            if self.max_chunk is not None and len(view) > self.max_chunk:
                self.injected += 1
                view = view[: self.max_chunk]
            if self.capacity is not None:
                room = self.capacity - self._used()
                if room <= 0:
                    self.injected += 1
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                if len(view) > room:
                    self.injected += 1
                    view = view[:room]  # the short write a filling disk gives
            return self._write(fd, view)

    def fsync(self, fd: int) -> None:
        if self.fsync_eio and self._targets(fd):
            with self._lock:
                self.fsync_eio -= 1
                self.injected += 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self._fsync(fd)

    def open(self, path: Any, flags: int, mode: int = 0o777, **kwargs: Any) -> int:
        if (
            self.create_enospc
            and flags & os.O_CREAT
            and os.path.abspath(path).startswith(self.directory + os.sep)
        ):
            with self._lock:
                self.create_enospc -= 1
                self.injected += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._open(path, flags, mode, **kwargs)

    def ftruncate(self, fd: int, length: int) -> None:
        if self.truncate_eio and self._targets(fd):
            with self._lock:
                self.truncate_eio -= 1
                self.injected += 1
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self._ftruncate(fd, length)


@contextmanager
def inject(mp: pytest.MonkeyPatch, directory: Path) -> Iterator[DiskFaults]:
    faults = DiskFaults(directory)
    mp.setattr(os, "write", faults.write)
    mp.setattr(os, "fsync", faults.fsync)
    mp.setattr(os, "ftruncate", faults.ftruncate)
    mp.setattr(os, "open", faults.open)
    try:
        yield faults
    finally:
        mp.undo()
