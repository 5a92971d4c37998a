"""Run one app under callgrind and read its labelled dumps.

``run(app, ...)`` starts ``valgrind --tool=callgrind --instr-atstart=no`` on
``cg_worker.py measure``: imports and start-up run uninstrumented (fast), the worker starts
counting once the app is up, and every window ends in a labelled dump (see ``_marker``).
``read_dumps`` returns each label's instruction count (``Ir``, the sum over all threads:
the span exporter's and access log's background threads included).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
_DESC = re.compile(r"^desc: Trigger: Client Request: (.*)$", re.M)
_TOTALS = re.compile(r"^(?:totals|summary): (\d+)", re.M)


class CallgrindError(RuntimeError):
    """valgrind is missing, the run failed, or its dumps do not add up."""


@dataclass
class Run:
    app: str
    windows: dict[str, int]  # label -> instructions
    dump_files: dict[str, Path]
    worker: dict[str, Any]  # what cg_worker wrote: statuses, work counters, Redis stats


def require_valgrind() -> str:
    found = shutil.which("valgrind")
    if found is None:
        raise CallgrindError("valgrind is not installed: apt-get install valgrind")
    return found


def read_dumps(directory: Path) -> tuple[dict[str, int], dict[str, Path]]:
    windows: dict[str, int] = {}
    files: dict[str, Path] = {}
    for path in sorted(directory.glob("cg.out.*")):
        head = path.read_text(errors="replace")
        desc, totals = _DESC.search(head), _TOTALS.search(head)
        if desc is None or totals is None:
            continue  # the dump at program termination
        windows[desc.group(1)] = int(totals.group(1))
        files[desc.group(1)] = path
    return windows, files


def run(
    app: str,
    out_dir: Path,
    *,
    n1: int,
    n2: int,
    warmup: int,
    modes: str,
    env: dict[str, str],
    timeout: float = 3600,
) -> Run:
    valgrind = require_valgrind()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("cg.out.*"):
        old.unlink()
    result = out_dir / "worker.json"
    cmd = [
        valgrind,
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out_dir}/cg.out.%p",
        sys.executable,
        str(BENCH / "cg_worker.py"),
        "measure",
        app,
        f"--n1={n1}",
        f"--n2={n2}",
        f"--warmup={warmup}",
        f"--modes={modes}",
        f"--out={result}",
    ]
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **env}
    proc = subprocess.run(
        cmd, env=full_env, capture_output=True, text=True, timeout=timeout, check=False
    )
    (out_dir / "valgrind.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not result.exists():
        raise CallgrindError(
            f"{app}: the callgrind run exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    windows, files = read_dumps(out_dir)
    return Run(app, windows, files, json.loads(result.read_text()))
