"""Append bytes to a file all or nothing: a failed write is cut back to the last whole record.

A full disk (ENOSPC, EDQUOT) or an I/O error (EIO) can stop a write part-way, after the
kernel took some of the bytes (a short write). Left in place, that fragment and the retry
appended after it make a line that does not parse and a log that no longer verifies. So a
failed append truncates the file back to its size before the append and fsyncs, and the
caller retries the whole batch later.
"""

from __future__ import annotations

import errno
import os


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``, looping over short writes.

    A write that takes no byte at all is reported as ENOSPC: on a regular file it only
    happens when the file system has no room, and looping on it would never end.
    """
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def rollback(fd: int, size: int) -> None:
    """Cut the file back to ``size`` bytes and make the cut durable (raises OSError)."""
    os.ftruncate(fd, size)
    os.fsync(fd)


class AppendFailedError(OSError):
    """An append that did not happen. ``rolled_back`` is False when the cut-back failed too:
    the file may still end in a fragment, which ``rollback`` must remove before the next
    append."""

    def __init__(self, cause: OSError, *, rolled_back: bool) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.rolled_back = rolled_back


def append_all_or_nothing(fd: int, data: bytes, size_before: int, *, fsync: bool = True) -> None:
    """Append ``data`` to ``fd`` (opened with O_APPEND, ``size_before`` bytes long) or raise.

    On any OSError during the write or the fsync the file is truncated back to
    ``size_before`` and fsynced, then AppendFailedError is raised from the original error.
    """
    try:
        write_all(fd, data)
        if fsync:
            os.fsync(fd)
    except OSError as exc:
        try:
            rollback(fd, size_before)
        except OSError:
            raise AppendFailedError(exc, rolled_back=False) from exc
        raise AppendFailedError(exc, rolled_back=True) from exc


def describe(exc: OSError) -> str:
    """A short, secret-free description of an OSError: its errno name and message."""
    name = errno.errorcode.get(exc.errno or 0, "OSError")
    return f"{name} ({exc.strerror or exc})"
