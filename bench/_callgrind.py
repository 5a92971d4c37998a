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


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Client:
    """One keep-alive HTTP/1.1 connection to the served app; requests one at a time."""

    def __init__(self, port: int, proc: subprocess.Popen[str], timeout: float) -> None:
        import http.client
        import socket
        import time

        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise CallgrindError(f"the served app exited with {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise CallgrindError(
                        f"the served app did not listen within {timeout}s"
                    ) from None
                time.sleep(0.2)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.conn.request("GET", path, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def control(self, path: str) -> Any:
        status, body = self.get(f"/__bench__/{path}")
        if status != 200:
            raise CallgrindError(f"control request {path} answered {status}: {body[:300]!r}")
        return json.loads(body)


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def _redis_delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for command, now in after.items():
        then = before.get(command, {"calls": 0.0, "usec": 0.0})
        calls, usec = now["calls"] - then["calls"], now["usec"] - then["usec"]
        if calls > 0:
            out[command] = {"calls": calls, "usec": usec}
    return out


def run_http(
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
    """As ``run``, but the app is served by uvicorn (h11) and loaded over one connection."""
    valgrind = require_valgrind()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("cg.out.*"):
        old.unlink()
    result, port = out_dir / "worker.json", _free_port()
    cmd = [valgrind, "--tool=callgrind", "--instr-atstart=no"]
    cmd += [f"--callgrind-out-file={out_dir}/cg.out.%p", sys.executable]
    cmd += [str(BENCH / "cg_serve.py"), app, f"--port={port}", f"--out={result}"]
    log = (out_dir / "valgrind.log").open("w")
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **env}
    proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=log, text=True)
    try:
        client = _Client(port, proc, timeout=600)
        featured = bool(client.control("start")["featured"])
        windows = []
        for mode in modes.split(",") if featured else ["reuse"]:
            token = client.control("mint?permission=hello:read&count=1")[0] if featured else None
            for label, n in (("warmup", warmup), ("n1", n1), ("n2", n2)):
                if mode == "fresh" and featured:
                    tokens = client.control(f"mint?permission=hello:read&count={n}")
                else:
                    tokens = [token] * n
                client.control(f"mark?label=gap+{mode}+{label}")
                bad = [status for t in tokens if (status := client.get("/", t)[0]) != 200]
                client.control(f"mark?label=window+{mode}+{label}+{n}")
                windows.append(
                    {"mode": mode, "label": label, "n": n, "non_200": len(bad), "statuses": bad}
                )
        (out_dir / "windows.json").write_text(json.dumps(windows))
        client.control("stop")
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    if not result.exists():
        raise CallgrindError(f"{app}: the served app wrote no results; see {out_dir}/valgrind.log")
    return load(out_dir)


def load(out_dir: Path) -> Run:
    """A run again from the directory it left (``--keep``): dumps and the worker's figures."""
    key = (out_dir / "key.txt").read_text().strip() if (out_dir / "key.txt").exists() else ""
    worker = json.loads((out_dir / "worker.json").read_text())
    dumps, files = read_dumps(out_dir)
    if "reads" not in worker:
        return Run(key or worker["app"], dumps, files, worker)
    # Served over HTTP: the harness kept the windows; the server kept the counter reads.
    windows = json.loads((out_dir / "windows.json").read_text())
    reads = {r["label"]: r for r in worker["reads"]}
    for window in windows:
        tag = f"{window['mode']} {window['label']}"
        end, start = reads[f"window {tag} {window['n']}"], reads[f"gap {tag}"]
        window["work"] = _delta(end["work"], start["work"])
        window["redis"] = _redis_delta(end["redis"], start["redis"])
    summary = {"app": worker["app"], "featured": worker["featured"], "windows": windows}
    return Run(key or f"{worker['app']}@http", dumps, files, summary)
