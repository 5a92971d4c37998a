"""Callgrind client requests from Python: start counting, and dump the count so far with a label.

Valgrind's client requests are a magic instruction sequence only C can emit, so this module
compiles a four-line shared library against ``<valgrind/callgrind.h>`` (shipped with the
Debian ``valgrind`` package) with the system C compiler, once per machine, and calls it
through ctypes. ``CALLGRIND_DUMP_STATS_AT(label)`` writes the instructions counted since
the previous dump to a file whose ``desc:`` line carries the label, and zeroes the count:
the harness reads one figure per labelled window. Outside valgrind every call is a no-op.
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

_SOURCE = """
#include <valgrind/callgrind.h>
void bench_dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
void bench_start(void) { CALLGRIND_START_INSTRUMENTATION; }
int bench_on_valgrind(void) { return RUNNING_ON_VALGRIND; }
"""


class MarkerError(RuntimeError):
    """The marker library cannot be built (no C compiler or no valgrind headers)."""


def build() -> Path:
    """The compiled marker library (built on first use, cached under the temp directory)."""
    digest = hashlib.sha256(_SOURCE.encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"saasfw-bench-marker-{digest}.so"
    if target.exists():
        return target
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise MarkerError("no C compiler to build the callgrind marker: apt-get install gcc")
    if not Path("/usr/include/valgrind/callgrind.h").exists():
        raise MarkerError("no <valgrind/callgrind.h>: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "marker.c"
        source.write_text(_SOURCE)
        built = Path(tmp) / "marker.so"
        subprocess.run(
            [compiler, "-shared", "-fPIC", "-O1", "-o", str(built), str(source)],
            check=True,
            capture_output=True,
        )
        shutil.move(str(built), target)
    return target


class Marker:
    """Label windows of a run under callgrind; does nothing when not under valgrind."""

    def __init__(self) -> None:
        self._lib = ctypes.CDLL(str(build()))
        self.active = bool(self._lib.bench_on_valgrind())

    def start(self) -> None:
        """Start counting (the run is started with ``--instr-atstart=no``)."""
        if self.active:
            self._lib.bench_start()

    def dump(self, label: str) -> None:
        """Write the instructions counted since the last dump under ``label``; zero them."""
        if self.active:
            self._lib.bench_dump(label.encode())
