"""Reusable HTTP throughput harness: uvicorn on one core, wrk on the other, ratios to a baseline.

Usage from a benchmark script (run from the repository root, as ``bench/run.py`` does)::

    from _http import App, compare
    results = compare(
        [App("bare", "apps.observability_bare:app"), App("ours", "apps.observability_saasfw:app")],
        baseline="bare",
        smoke="--smoke" in sys.argv,
    )

Each app runs in its own uvicorn process (one worker, pinned with ``taskset -c 0`` when
taskset exists); wrk runs pinned to core 1. All servers start first; then every round
loads each app in turn for the same duration (interleaved rounds, so drift in the
machine's load hits every app alike); the report is each app's median requests/second and
its ratio to the baseline's median.

An app may expose ``GET /__bench__/stats`` returning a JSON object of counters (spans
exported, log lines written, requests counted by its metrics). The harness reads it
before and after every timed window and checks each counter advanced by at least the
number of requests wrk completed in that window: proof the app really did its work
while being measured, not just answered.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
STATS_PATH = "/__bench__/stats"


class BenchError(RuntimeError):
    """A benchmark could not run or an app did not do its work."""


@dataclass(frozen=True)
class App:
    """An ASGI app to measure: a name for the report and a uvicorn ``module:attr`` spec."""

    name: str
    spec: str
    path: str = "/"
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Result:
    app: App
    rps: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rps) if self.rps else 0.0

    def paired_ratio(self, baseline: Result) -> float:
        """Median over rounds of this app's rate over the baseline's rate in that round."""
        pairs = [mine / base for mine, base in zip(self.rps, baseline.rps, strict=True) if base]
        return statistics.median(pairs) if pairs else 0.0


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed: apt-get install wrk (Debian/Ubuntu package)")
    return wrk


def _pin(core: int) -> list[str]:
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(core)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One uvicorn process serving one app on a free local port."""

    def __init__(self, app: App, workdir: Path) -> None:
        self.app = app
        self.port = _free_port()
        self.log_path = workdir / f"{app.name}.uvicorn.log"
        env = {
            **os.environ,
            "BENCH_TMP": str(workdir / app.name),
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p
            ),
            **app.env,
        }
        Path(env["BENCH_TMP"]).mkdir(parents=True, exist_ok=True)
        cmd = [
            *_pin(0),
            sys.executable,
            "-m",
            "uvicorn",
            app.spec,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=BENCH_DIR
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.app.name}: uvicorn exited with {self.process.returncode}:\n"
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            try:
                with urllib.request.urlopen(  # noqa: S310 - always http://127.0.0.1
                    self.base_url + self.app.path, timeout=2
                ) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise BenchError(f"{self.app.name}: not ready after {timeout}s")

    def stats(self) -> dict[str, float] | None:
        try:
            with urllib.request.urlopen(  # noqa: S310 - always http://127.0.0.1
                self.base_url + STATS_PATH, timeout=30
            ) as resp:
                data = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return {str(k): float(v) for k, v in data.items()}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_COUNT = re.compile(r"(\d+) requests in")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def run_wrk(
    url: str, *, duration: float, connections: int = 64, threads: int = 1
) -> tuple[float, int]:
    """Load ``url`` with wrk pinned to core 1; return (requests/second, completed requests).

    Error responses and connect/read/write errors fail the run. Requests slower than wrk's
    10 s timeout are reported but tolerated: on a machine shared with other work a stall
    can come from outside the app, and wrk's figure already leaves them out.
    """
    cmd = [
        *_pin(1),
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps, count = _RPS.search(out), _COUNT.search(out)
    if rps is None or count is None:
        raise BenchError(f"could not parse wrk output:\n{out}")
    socket_errors = _SOCKET.search(out)
    if _NON_2XX.search(out) or (socket_errors and any(int(n) for n in socket_errors.groups()[:3])):
        raise BenchError(f"wrk saw errors loading {url}:\n{out}")
    if socket_errors and int(socket_errors.group(4)):
        print(f"    note: {socket_errors.group(4)} request(s) over 10 s (machine load?)")
    return float(rps.group(1)), int(count.group(1))


def _check_work(
    name: str, before: dict[str, float] | None, after: dict[str, float] | None, requests: int
) -> list[str]:
    if before is None or after is None:
        return []
    notes = []
    for key, value in after.items():
        delta = value - before.get(key, 0.0)
        if delta < requests:
            raise BenchError(
                f"{name}: {key} advanced by {delta:.0f} during a window of {requests} requests: "
                "the app did not do its work while measured"
            )
        notes.append(f"{key} +{delta:.0f}")
    return notes


def compare(
    apps: Sequence[App],
    *,
    baseline: str,
    rounds: int = 5,
    duration: float = 10.0,
    warmup: float = 3.0,
    connections: int = 64,
    smoke: bool = False,
) -> list[Result]:
    """Measure every app, interleaved, and print medians and ratios to ``baseline``."""
    require_wrk()
    if smoke:
        rounds, duration, warmup = 1, 1.0, 0.0
    pinning = "pinned: uvicorn core 0, wrk core 1" if _pin(0) else "unpinned"
    print(
        f"{len(apps)} apps, {rounds} interleaved round(s) of {duration:.0f}s, "
        f"{connections} connections, {pinning}",
        flush=True,
    )
    results = {app.name: Result(app) for app in apps}
    with tempfile.TemporaryDirectory(prefix="saasfw-bench-") as tmp:
        servers = [Server(app, Path(tmp)) for app in apps]
        try:
            for server in servers:
                server.wait_ready()
                if warmup > 0:
                    run_wrk(
                        server.base_url + server.app.path,
                        duration=warmup,
                        connections=connections,
                    )
            for round_no in range(1, rounds + 1):
                for server in servers:
                    before = server.stats()
                    rps, count = run_wrk(
                        server.base_url + server.app.path,
                        duration=duration,
                        connections=connections,
                    )
                    after = server.stats()
                    result = results[server.app.name]
                    result.rps.append(rps)
                    result.requests.append(count)
                    result.checks = _check_work(server.app.name, before, after, count)
                    print(f"  round {round_no} {server.app.name:<12} {rps:>9.0f} req/s", flush=True)
        finally:
            for server in servers:
                server.stop()
    base = results[baseline]
    print(
        f"\n{'app':<12} {'median req/s':>12} {'ratio':>7} {'paired':>7}  "
        "work done in the last window"
    )
    for result in results.values():
        ratio = result.median / base.median if base.median else 0.0
        print(
            f"{result.app.name:<12} {result.median:>12.0f} {ratio:>7.2f} "
            f"{result.paired_ratio(base):>7.2f}  {', '.join(result.checks) or '-'}"
        )
    print(
        "ratio: median req/s over the baseline's median; paired: median over rounds of the "
        "ratio to the baseline's figure in the same round (steadier when load drifts)"
    )
    return list(results.values())
