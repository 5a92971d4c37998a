"""Cost of the saasfw rate-limit check on a FastAPI hello endpoint, as a ratio to bare FastAPI.

``python bench/bench_ratelimit.py [--smoke] [--rounds N] [--duration S] [--redis URL]``

Apps (each in its own uvicorn, measured in interleaved rounds by ``_http.compare``):

- ``bare``: FastAPI answering ``GET /`` with a small JSON object.
- ``memory``: the same behind ``RateLimitMiddleware`` with a global per-address limit on the
  bounded memory storage (sliding-window counter), ``RateLimit`` headers on every response.
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

from _http import App, BenchError, compare
from fastapi import Depends, FastAPI

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


def _limiter(storage_url: str, *, middleware: bool) -> Any:
    from saasfw.security._ratelimit import RateLimiter, RateLimitSettings

    settings = RateLimitSettings.model_validate(
        {
            "storage_url": storage_url,
            "key_prefix": f"bench-{secrets.token_hex(4)}",
            "default_limits": [HUGE] if middleware else [],
            "exempt_paths": [STATS],
        }
    )
    return RateLimiter(settings)


def __getattr__(name: str) -> FastAPI:
    """uvicorn imports ``bench_ratelimit:<app>``; build only the app asked for."""
    if name == "bare":
        return _hello_app()
    if name == "memory":
        return _hello_app(_limiter("memory://", middleware=True))
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
    apps = [
        App("bare", "bench_ratelimit:bare"),
        App("memory", "bench_ratelimit:memory"),
        App("memory-dep", "bench_ratelimit:memory_dep"),
    ]
    if _redis_reachable(args.redis):
        apps.append(App("redis", "bench_ratelimit:redis", env={"BENCH_REDIS_URL": args.redis}))
    else:
        print(f"redis at {args.redis} is unreachable: the redis app is skipped", flush=True)
    try:
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
    memory = by_name["memory"].median
    if not args.smoke and base and memory:
        verdict = "meets" if base / memory - 1 < 0.05 else "MISSES"
        print(f"memory-storage check {verdict} the < 5% target (noisy on a shared machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
