"""Full-stack HTTP overhead: bare Starlette, bare FastAPI, the popular assembly and a saasfw
service doing the same work, each as a throughput ratio to bare FastAPI.

``python bench/bench_fullstack.py [--smoke] [--rounds N] [--duration S] [--json PATH]``

Every app serves ``GET /`` returning ``{"hello": "world"}``:

- ``starlette``: bare Starlette (``apps/fullstack_starlette.py``);
- ``fastapi``: bare FastAPI, the baseline (``apps/observability_bare.py``);
- ``popular``: asgi-correlation-id, structlog access logging in ``BaseHTTPMiddleware``,
  prometheus-fastapi-instrumentator, opentelemetry-instrumentation-fastapi (100% sampling,
  discarding exporter), an in-memory ``limits`` check, pyjwt bearer dependency with a permission
  check (``apps/fullstack_popular.py``);
- ``saasfw``: ``saasfw.app.create_app`` with JWT bearer ``require("hello:read")`` through
  RBAC, in-memory rate limit, RED metrics, one span per request at 100% sampling (same
  discarding exporter), a JSON access line to a file, correlation ids and security headers
  (``apps/fullstack_saasfw.py``).

uvicorn (one worker, h11) runs pinned to core 0 and wrk to core 1; the apps are loaded in
interleaved rounds and each reports its median requests/second. The authenticated apps are
loaded with a valid bearer token fetched from the app itself. In every timed window the
harness checks the work was done: each counter the app reports at ``/__bench__/stats``
(spans exported, access lines written, requests counted by its metrics, rate-limit checks,
authorized handler calls) advanced by at least the requests wrk completed, and a request
sent without a token in the middle of the window was refused with 401.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _http import (
    _COUNT,
    _NON_2XX,
    _RPS,
    _SOCKET,
    App,
    BenchError,
    Server,
    _check_work,
    _pin,
    require_wrk,
)

STATS = "/__bench__/stats"
TOKEN = "/__bench__/token"
_LATENCY = re.compile(r"Latency\s+([\d.]+)(us|ms|s)\b")
SECURITY_HEADERS = ("x-content-type-options", "content-security-policy", "x-frame-options")


@dataclass(frozen=True)
class Subject:
    """An app to measure; ``auth`` apps hand out a token at ``/__bench__/token``."""

    app: App
    auth: bool = False
    headers_expected: tuple[str, ...] = ()


SUBJECTS = [
    Subject(App("starlette", "apps.fullstack_starlette:app")),
    Subject(App("fastapi", "apps.observability_bare:app")),
    Subject(App("popular", "apps.fullstack_popular:app"), auth=True),
    Subject(
        App("saasfw", "apps.fullstack_saasfw:app"),
        auth=True,
        headers_expected=("x-request-id", *SECURITY_HEADERS),
    ),
]
BASELINE = "fastapi"


def fleet_subject(env: dict[str, str]) -> Subject:
    """The saasfw app in fleet shape: Redis for limits and revocation, spans over OTLP."""
    return Subject(
        App("saasfw-fleet", "apps.fullstack_saasfw:app", env=env),
        auth=True,
        headers_expected=("x-request-id", *SECURITY_HEADERS),
    )


@dataclass
class Measured:
    subject: Subject
    rps: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.rps) if self.rps else 0.0

    def paired_ratio(self, baseline: Measured) -> float:
        """Median over rounds of this app's rate over the baseline's rate in that round."""
        pairs = [mine / base for mine, base in zip(self.rps, baseline.rps, strict=True) if base]
        return statistics.median(pairs) if pairs else 0.0


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - local http
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def _wait_ready(server: Server, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(
                f"{server.app.name}: uvicorn exited with {server.process.returncode}:\n"
                + server.log_path.read_text(errors="replace")[-3000:]
            )
        try:
            if _get(server.base_url + path)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"{server.app.name}: not ready after {timeout}s")


def _token(server: Server) -> str:
    status, _, body = _get(server.base_url + TOKEN)
    if status != 200:
        raise BenchError(f"{server.app.name}: {TOKEN} answered {status}")
    return str(json.loads(body)["access_token"])


def _check_responses(subject: Subject, server: Server, token: str | None) -> None:
    """Before timing: the token is accepted, no token is refused, expected headers are set."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    status, headers, body = _get(server.base_url + "/", auth)
    if status != 200 or json.loads(body) != {"hello": "world"}:
        raise BenchError(f"{subject.app.name}: GET / answered {status} {body[:200]!r}")
    missing = [h for h in subject.headers_expected if h not in headers]
    if missing:
        raise BenchError(f"{subject.app.name}: response lacks headers {missing}")
    if subject.auth:
        status, headers, _ = _get(server.base_url + "/")
        if status != 401 or "www-authenticate" not in headers:
            raise BenchError(f"{subject.app.name}: GET / without a token answered {status}")


def _wrk(
    url: str, *, duration: float, connections: int, token: str | None
) -> tuple[float, int, float]:
    """(requests/second, completed requests, mean latency ms) of one wrk run on core 1.

    As in ``_http.run_wrk``: error responses and connect/read/write errors fail the run;
    requests over wrk's 10 s timeout are reported and tolerated (a stall on a shared
    machine can come from outside the app, and wrk's figure leaves them out).
    """
    cmd = [*_pin(1), require_wrk(), "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    cmd += ["--timeout", "10s"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    socket_errors = _SOCKET.search(out)
    if _NON_2XX.search(out) or (socket_errors and any(int(n) for n in socket_errors.groups()[:3])):
        raise BenchError(f"wrk saw errors loading {url}:\n{out}")
    if socket_errors and int(socket_errors.group(4)):
        print(f"    note: {socket_errors.group(4)} request(s) over 10 s (machine load?)")
    rps, count = _RPS.search(out), _COUNT.search(out)
    latency = _LATENCY.search(out)
    if rps is None or count is None or latency is None:
        raise BenchError(f"could not parse wrk output:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[latency.group(2)]
    return float(rps.group(1)), int(count.group(1)), float(latency.group(1)) * scale


def _unauthenticated_probe(url: str, delay: float, out: list[int]) -> threading.Thread:
    """Mid-window, send one request without a token; record its status."""

    def probe() -> None:
        time.sleep(delay)
        try:
            out.append(_get(url)[0])
        except OSError:
            out.append(0)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    return thread


def measure(
    subjects: list[Subject],
    *,
    rounds: int,
    duration: float,
    warmup: float,
    connections: int,
) -> list[Measured]:
    require_wrk()
    pinning = "pinned: uvicorn core 0, wrk core 1" if _pin(0) else "unpinned"
    print(
        f"{len(subjects)} apps, {rounds} interleaved round(s) of {duration:.0f}s, "
        f"{connections} connections, {pinning}",
        flush=True,
    )
    results = {s.app.name: Measured(s) for s in subjects}
    with tempfile.TemporaryDirectory(prefix="saasfw-bench-fullstack-") as tmp:
        servers = [Server(s.app, Path(tmp)) for s in subjects]
        tokens: dict[str, str | None] = {}
        try:
            for subject, server in zip(subjects, servers, strict=True):
                _wait_ready(server, TOKEN if subject.auth else "/")
                tokens[subject.app.name] = _token(server) if subject.auth else None
                _check_responses(subject, server, tokens[subject.app.name])
                if warmup > 0:
                    _wrk(
                        server.base_url + "/",
                        duration=warmup,
                        connections=connections,
                        token=tokens[subject.app.name],
                    )
            for round_no in range(1, rounds + 1):
                for subject, server in zip(subjects, servers, strict=True):
                    name = subject.app.name
                    before = server.stats()
                    statuses: list[int] = []
                    probe = (
                        _unauthenticated_probe(server.base_url + "/", duration / 2, statuses)
                        if subject.auth
                        else None
                    )
                    rps, count, latency = _wrk(
                        server.base_url + "/",
                        duration=duration,
                        connections=connections,
                        token=tokens[name],
                    )
                    after = server.stats()
                    result = results[name]
                    if probe is not None:
                        probe.join(timeout=60)
                        if statuses != [401]:
                            raise BenchError(
                                f"{name}: a request without a token during the window got "
                                f"{statuses or 'no answer'}, not 401"
                            )
                        result.refused.append(statuses[0])
                        # The refused request is counted by some metrics too; it needs no
                        # allowance: every counter must still cover wrk's requests.
                    result.rps.append(rps)
                    result.latency_ms.append(latency)
                    result.checks = _check_work(name, before, after, count)
                    print(
                        f"  round {round_no} {name:<12} {rps:>9.0f} req/s  "
                        f"{latency:>7.2f} ms mean latency",
                        flush=True,
                    )
        finally:
            for server in servers:
                server.stop()
    return list(results.values())


def report(results: list[Measured]) -> dict[str, object]:
    baseline = next(r for r in results if r.subject.app.name == BASELINE)
    base = baseline.median
    print(
        f"\n{'app':<12} {'median req/s':>12} {'ratio':>6} {'paired':>6}  "
        "work done in the last window"
    )
    rows = []
    for result in results:
        ratio = result.median / base if base else 0.0
        paired = result.paired_ratio(baseline)
        checks = list(result.checks)
        if result.refused:
            checks.append(f"no-token request refused {result.refused[-1]} in every window")
        print(
            f"{result.subject.app.name:<12} {result.median:>12.0f} {ratio:>6.2f} {paired:>6.2f}  "
            f"{', '.join(checks) or '-'}"
        )
        rows.append(
            {
                "app": result.subject.app.name,
                "median_rps": round(result.median, 1),
                "ratio": round(ratio, 3),
                "paired_ratio": round(paired, 3),
                "rps": result.rps,
                "mean_latency_ms": result.latency_ms,
                "checks": checks,
            }
        )
    return {"baseline": BASELINE, "apps": rows}


def _load() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="about two seconds per app")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--only", nargs="*", help="measure only these apps (and the baseline)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--fleet",
        action="store_true",
        help="also the fleet shape (Redis rate limit and revocation, OTLP to a receiver)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.duration, args.warmup = 1, 2.0, 0.0
    subjects = [s for s in SUBJECTS if not args.only or s.app.name in {*args.only, BASELINE}]
    load_before = _load()
    try:
        with contextlib.ExitStack() as stack:
            if args.fleet:
                from _services import Receiver, redis_server

                # Redis and the receiver run beside the load generator, not on the server's
                # core (uvicorn is pinned to core 0 apart from this process's affinity).
                if _pin(1) and hasattr(os, "sched_setaffinity"):
                    os.sched_setaffinity(0, {1})

                redis_url, where = stack.enter_context(redis_server())
                receiver = stack.enter_context(Receiver())
                print(f"fleet shape: Redis is a {where}; OTLP receiver at {receiver.url}")
                env = {"BENCH_REDIS_URL": redis_url, "BENCH_OTLP_URL": receiver.url}
                subjects.append(fleet_subject(env))
            results = measure(
                subjects,
                rounds=args.rounds,
                duration=args.duration,
                warmup=args.warmup,
                connections=args.connections,
            )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = report(results)
    data |= {
        "rounds": args.rounds,
        "duration_s": args.duration,
        "connections": args.connections,
        "load_average_before": load_before,
        "load_average_after": _load(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    print(f"load average before {load_before}, after {data['load_average_after']}")
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
