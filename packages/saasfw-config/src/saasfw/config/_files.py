"""Defensive reading of configuration and secret files.

Every failure becomes a one-line reason (missing, unreadable, a directory, not a regular
file, too large, binary, not UTF-8) instead of a traceback. Reading is bounded so a huge or
endless file (``/dev/zero``) cannot exhaust memory, and non-regular files are refused before
opening so a FIFO cannot block start-up.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_CONFIG_BYTES = 1024 * 1024
MAX_SECRET_BYTES = 64 * 1024


class FileProblem(Exception):
    """Internal: why a file could not be read (turned into a Problem by the caller)."""

    def __init__(self, reason: str, kind: str = "file") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


def _describe_os_error(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "does not exist"
    if isinstance(exc, PermissionError):
        return "cannot be read: permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a directory, not a file"
    return f"cannot be read: {exc.strerror or type(exc).__name__}"


def file_stat(path: Path) -> os.stat_result:
    """``os.stat`` following symlinks (Kubernetes secret mounts are symlinks), as FileProblem."""
    try:
        return path.stat()
    except OSError as exc:
        raise FileProblem(_describe_os_error(exc)) from None


def read_text(path: Path, *, limit: int = MAX_CONFIG_BYTES) -> str:
    """Read a UTF-8 text file of at most ``limit`` bytes, or raise FileProblem saying why not."""
    info = file_stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise FileProblem("is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise FileProblem("is not a regular file")
    if info.st_size > limit:
        raise FileProblem(f"is {info.st_size} bytes, larger than the {limit}-byte limit")
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise FileProblem(_describe_os_error(exc)) from None
    if len(data) > limit:
        raise FileProblem(f"is larger than the {limit}-byte limit")
    nul = data.find(b"\x00")
    if nul != -1:
        raise FileProblem(f"contains binary data (NUL byte at offset {nul}), expected text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileProblem(f"is not valid UTF-8 text (bad byte at offset {exc.start})") from None
