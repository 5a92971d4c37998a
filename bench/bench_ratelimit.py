"""Cost of the saasfw rate-limit check on a FastAPI hello endpoint, as a ratio to bare FastAPI.

``python bench/bench_ratelimit.py [--smoke] [--rounds N] [--duration S] [--redis URL]``

Apps (each in its own uvicorn, measured in interleaved rounds by ``_http.compare``):

- ``bare``: FastAPI answering ``GET /`` with a small JSON object.
- ``memory``: the same behind ``RateLimitMiddleware`` with a global per-address limit on the
  bounded memory storage, default settings (sliding-window counter, ``RateLimit`` headers
  on refusals only).
- ``memory-headers``: the same with ``headers=True`` (``RateLimit`` and ``RateLimit-Policy``
  on every allowed response too), to show what two more response headers cost.
- ``memory-dep``: the limit declared as a per-route ``RateLimit`` dependency instead.
- ``redis``: the middleware on Redis storage (needs a Redis; ``--redis`` or
  ``SAASFW_TEST_REDIS_URL``; skipped when unreachable).

The limit is far above what the run can reach, so every request is checked and counted but
none is refused; ``/__bench__/stats`` reports the limiter's checks so the harness proves the
check ran for every measured request. Target: ``memory`` within 5% of ``bare``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from typing import Any
from urllib.parse import urlsplit

from _http import App, BenchError, Server, compare, run_wrk
from fastapi import Depends, FastAPI
from starlette.types import Message

HUGE = "1000000000/minute"
STATS = "/__bench__/stats"


def _hello_app(limiter: Any = None, *, dependency: bool = False) -> FastAPI:
    app = FastAPI()
    deps = []
    if limiter is not None and dependency:
        from saasfw.security._ratelimit_asgi import RateLimit

        deps = [Depends(RateLimit(HUGE, limiter=limiter))]

    @app.get("/", dependencies=deps)
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    if limiter is not None:

        @app.get(STATS)
        async def stats() -> dict[str, int]:
            return {"rate_limit_checks": limiter.checks}

        if not dependency:
            from saasfw.security._ratelimit_asgi import RateLimitMiddleware

            app.add_middleware(RateLimitMiddleware, limiter=limiter)
    return app


def _limiter(storage_url: str, *, middleware: bool, headers: bool = False) -> Any:
    from saasfw.security._ratelimit import RateLimiter, RateLimitSettings

    settings = RateLimitSettings.model_validate(
        {
            "storage_url": storage_url,
            "key_prefix": f"bench-{secrets.token_hex(4)}",
            "default_limits": [HUGE] if middleware else [],
            "exempt_paths": [STATS],
            "headers": headers,
            # The bench measures cost, not outage handling: on a loaded machine the default
            # 0.25 s Redis timeout would turn slow answers into 503s and stop wrk.
            "storage_timeout": 2.0,
        }
    )
    return RateLimiter(settings)


def __getattr__(name: str) -> FastAPI:
    """uvicorn imports ``bench_ratelimit:<app>``; build only the app asked for."""
    if name == "bare":
        return _hello_app()
    if name == "memory":
        return _hello_app(_limiter("memory://", middleware=True))
    if name == "memory_headers":
        return _hello_app(_limiter("memory://", middleware=True, headers=True))
    if name == "memory_dep":
        return _hello_app(_limiter("memory://", middleware=False), dependency=True)
    if name == "redis":
        return _hello_app(_limiter(os.environ["BENCH_REDIS_URL"], middleware=True))
    raise AttributeError(name)


def _redis_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 1):
            return True
    except OSError:
        return False


def _asgi_cost(app: FastAPI, requests: int) -> float:
    """CPU seconds per request of ``GET /`` driven straight through the ASGI interface."""
    import asyncio
    import time

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def drive() -> float:
        for _ in range(200):  # warm caches, lazy imports, the limiter's storage
            await app(dict(scope), receive, send)
        started = time.process_time()
        for _ in range(requests):
            await app(dict(scope), receive, send)
        return (time.process_time() - started) / requests

    cost = asyncio.run(drive())
    if set(statuses) != {200}:
        raise BenchError(f"in-process run answered {sorted(set(statuses))}, not only 200")
    return cost


def in_process(rounds: int, requests: int) -> None:
    """Interleaved in-process rounds, best round per app: the framework cost without the
    HTTP server and the network, far less sensitive to a busy machine than wrk."""
    apps = {
        "bare": _hello_app(),
        "memory": _hello_app(_limiter("memory://", middleware=True)),
        "memory-dep": _hello_app(_limiter("memory://", middleware=False), dependency=True),
    }
    best = dict.fromkeys(apps, float("inf"))
    for _ in range(rounds):
        for name, app in apps.items():
            best[name] = min(best[name], _asgi_cost(app, requests))
    base = best["bare"]
    print(f"\nin process (ASGI, best of {rounds} rounds of {requests} requests):")
    for name, cost in best.items():
        print(
            f"  {name:<11} {cost * 1e6:7.1f} us/request  {cost / base - 1:+6.1%} vs bare"
            f"  ({(cost - base) * 1e6:+.1f} us)"
        )


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process: /proc/<pid>/schedstat (nanoseconds) where the kernel has it,
    else user plus system time from /proc/<pid>/stat (clock ticks, coarse)."""
    try:
        with open(f"/proc/{pid}/schedstat") as schedstat:
            nanoseconds = int(schedstat.read().split()[0])
        if nanoseconds > 0:  # 0 when the kernel does not keep schedstats
            return nanoseconds / 1e9
    except (OSError, ValueError, IndexError):
        pass
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_request(apps: list[App], *, rounds: int, duration: float) -> dict[str, float]:
    """Server CPU time per request under wrk load, median of interleaved rounds.

    CPU time counts the work the server did, not the time it waited for a core, so it
    stays meaningful on a machine other jobs keep busy, where requests/second does not.
    """
    import statistics
    import tempfile
    from pathlib import Path

    if not os.path.exists("/proc/self/stat"):
        raise BenchError("CPU accounting needs Linux /proc")
    samples: dict[str, list[float]] = {app.name: [] for app in apps}
    with tempfile.TemporaryDirectory(prefix="saasfw-bench-cpu-") as tmp:
        servers = [Server(app, Path(tmp)) for app in apps]
        try:
            for server in servers:
                server.wait_ready()
                run_wrk(server.base_url + server.app.path, duration=1.0)
            for _ in range(rounds):
                for server in servers:
                    before = _cpu_seconds(server.process.pid)
                    _, count = run_wrk(server.base_url + server.app.path, duration=duration)
                    used = _cpu_seconds(server.process.pid) - before
                    samples[server.app.name].append(used / max(count, 1))
        finally:
            for server in servers:
                server.stop()
    result = {name: statistics.median(values) for name, values in samples.items()}
    base_name = apps[0].name
    print(f"\nserver CPU per request over HTTP ({rounds} interleaved rounds):")
    for name, cost in list(result.items()):
        # The median of per-round ratios: each round's apps ran back to back, so the
        # machine's drift cancels better than in a ratio of medians.
        paired = statistics.median(
            own / ref for own, ref in zip(samples[name], samples[base_name], strict=True)
        )
        print(
            f"  {name:<14} {cost * 1e6:7.1f} us/request (median)  {paired - 1:+6.1%} vs bare"
            f" (median of per-round ratios)"
        )
        result[name + ":ratio"] = paired
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="about a second per app")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--redis",
        default=os.environ.get("SAASFW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="Redis for the redis app (skipped when unreachable)",
    )
    args = parser.parse_args(argv)
    in_process(rounds=3 if args.smoke else 15, requests=300 if args.smoke else 3000)
    apps = [
        App("bare", "bench_ratelimit:bare"),
        App("memory", "bench_ratelimit:memory"),
        App("memory-headers", "bench_ratelimit:memory_headers"),
        App("memory-dep", "bench_ratelimit:memory_dep"),
    ]
    if _redis_reachable(args.redis):
        apps.append(App("redis", "bench_ratelimit:redis", env={"BENCH_REDIS_URL": args.redis}))
    else:
        print(f"redis at {args.redis} is unreachable: the redis app is skipped", flush=True)
    try:
        cpu = cpu_per_request(
            apps,
            rounds=1 if args.smoke else args.rounds,
            duration=1.0 if args.smoke else args.duration,
        )
        results = compare(
            apps,
            baseline="bare",
            rounds=args.rounds,
            duration=args.duration,
            connections=args.connections,
            smoke=args.smoke,
        )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    by_name = {r.app.name: r for r in results}
    base = by_name["bare"].median
    print("\nper-request cost added to bare FastAPI (from the medians):")
    for name, result in by_name.items():
        if name == "bare" or not result.median or not base:
            continue
        added_us = (1 / result.median - 1 / base) * 1e6
        overhead = base / result.median - 1
        print(f"  {name:<11} {added_us:+7.1f} us/request  ({overhead:+.1%} time per request)")
    if not args.smoke:
        overhead = cpu["memory:ratio"] - 1
        verdict = "meets" if overhead < 0.05 else "MISSES"
        print(
            f"memory-storage check adds {overhead:+.1%} server CPU per request: {verdict} the"
            " < 5% target (req/s ratios above are noisier on a shared machine)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
