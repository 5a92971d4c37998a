"""Profile one full-stack bench app's request path in process, without a server or wrk.

``python bench/profile_fullstack.py [APP] [--requests N] [--profiler cprofile|pyinstrument]``

Starts the app's lifespan, fetches a token from ``/__bench__/token`` when the app has one,
then drives ``GET /`` straight through the ASGI interface ``N`` times and prints where the
CPU time goes (cProfile's top functions by own and cumulative time, or pyinstrument's call
tree), plus the CPU microseconds per request. What it leaves out is the server's share
(uvicorn's h11 parsing and the socket writes): the same for every app.

APP is a ``bench/apps`` module name (default ``fullstack_saasfw``).

``--ablate`` instead measures the saasfw app with each piece left out in turn
(``BENCH_SAASFW_OFF``, see ``apps/fullstack_saasfw.py``), each in a fresh process, best of
``--repeat`` runs, and prints what each piece costs in CPU microseconds per request: the
full stack's cost minus the cost without that piece.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Message = dict[str, Any]
ASGI = Callable[
    [dict[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _request(app: ASGI, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(_scope(path, headers), receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


async def _run(app: ASGI, requests: int, profiler: str) -> None:
    startup: asyncio.Queue[Message] = asyncio.Queue()
    replies: asyncio.Queue[Message] = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})

    async def send(message: Message) -> None:
        await replies.put(message)

    lifespan = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, startup.get, send)
    )
    started = await replies.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"lifespan failed: {started}")
    headers: list[tuple[bytes, bytes]] = []
    status, body = await _request(app, "/__bench__/token", [])
    if status == 200:
        token = json.loads(body)["access_token"]
        headers = [(b"authorization", f"Bearer {token}".encode())]
    for _ in range(500):
        status, body = await _request(app, "/", headers)
    if status != 200:
        raise SystemExit(f"GET / answered {status}: {body[:300]!r}")
    cpu = time.process_time()
    if profiler == "pyinstrument":
        from pyinstrument import Profiler

        prof = Profiler(interval=0.0001, async_mode="disabled")
        prof.start()
        for _ in range(requests):
            await _request(app, "/", headers)
        prof.stop()
        cpu = time.process_time() - cpu
        print(prof.output_text(unicode=True, color=False, show_all=False))
    elif profiler == "cprofile":
        prof2 = cProfile.Profile()
        prof2.enable()
        for _ in range(requests):
            await _request(app, "/", headers)
        prof2.disable()
        cpu = time.process_time() - cpu
        if os.environ.get("BENCH_PROFILE_SAVE"):
            prof2.dump_stats(os.environ["BENCH_PROFILE_SAVE"])
        stats = pstats.Stats(prof2)
        stats.sort_stats("tottime").print_stats(35)
        stats.sort_stats("cumulative").print_stats(60)
    else:
        for _ in range(requests):
            await _request(app, "/", headers)
        cpu = time.process_time() - cpu
    print(f"{requests} requests, {cpu / requests * 1e6:.0f} us CPU per request ({profiler})")
    await startup.put({"type": "lifespan.shutdown"})
    await replies.get()
    await lifespan


ABLATIONS = [
    ("full stack (as create_app builds it)", ""),
    ("FastAPI native tracing", "fastapi_tracing"),
    ("observability (id, span, metrics, access line)", "observability"),
    ("authentication + RBAC (require)", "auth"),
    ("rate limit (memory)", "rate_limiting"),
    ("security headers + CORS", "security_headers"),
    ("request size limits", "request_limits"),
    ("health-probe dispatch", "health"),
    ("problem+json error middleware", "problem_details"),
]
EVERYTHING = ",".join(off for _, off in ABLATIONS[1:])


def _cpu_per_request(app: str, off: str, requests: int) -> float:
    import re
    import subprocess

    done = subprocess.run(
        [sys.executable, __file__, app, "--profiler", "none", "--requests", str(requests)],
        env={**os.environ, "BENCH_SAASFW_OFF": off},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{app} with {off!r} off failed:\n{done.stderr[-3000:]}")
    out = done.stdout
    found = re.search(r"([\d.]+) us CPU per request", out)
    if found is None:
        raise SystemExit(f"no figure in:\n{out[-2000:]}")
    return float(found.group(1))


def ablate(requests: int, repeat: int) -> None:
    """Interleaved rounds (every configuration once per round); best of the rounds each."""
    configs = [("observability_bare", ""), *(("fullstack_saasfw", off) for _, off in ABLATIONS)]
    configs.append(("fullstack_saasfw", EVERYTHING))
    best = {config: float("inf") for config in configs}
    for round_no in range(1, repeat + 1):
        for config in configs:
            best[config] = min(best[config], _cpu_per_request(*config, requests))
        print(f"  round {round_no}/{repeat} done", file=sys.stderr, flush=True)
    bare = best[configs[0]]
    full = best[configs[1]]
    print(f"{'bare FastAPI':<48} {bare:>7.0f} us CPU per request")
    print(f"{ABLATIONS[0][0]:<48} {full:>7.0f} us  (+{full - bare:.0f} over bare)")
    for label, off in ABLATIONS[1:]:
        cost = full - best[("fullstack_saasfw", off)]
        print(f"  {label:<46} {cost:>7.0f} us  ({cost / full:>4.0%})")
    rest = best[configs[-1]]
    print(f"{'create_app with every piece above off':<48} {rest:>7.0f} us")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", nargs="?", default="fullstack_saasfw")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument(
        "--profiler", choices=("cprofile", "pyinstrument", "none"), default="pyinstrument"
    )
    parser.add_argument("--ablate", action="store_true", help="cost of each piece")
    parser.add_argument("--repeat", type=int, default=3, help="--ablate: best of N runs")
    args = parser.parse_args(argv)
    if args.ablate:
        ablate(args.requests, args.repeat)
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    with tempfile.TemporaryDirectory(prefix="saasfw-profile-") as tmp:
        os.environ.setdefault("BENCH_TMP", tmp)
        module = importlib.import_module(f"apps.{args.app}")
        asyncio.run(_run(module.app, args.requests, args.profiler))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
