"""Profile one full-stack bench app's request path in process, without a server or wrk.

``python bench/profile_fullstack.py [APP] [--requests N] [--profiler cprofile|pyinstrument]``

Starts the app's lifespan, fetches a token from ``/__bench__/token`` when the app has one,
then drives ``GET /`` straight through the ASGI interface ``N`` times and prints where the
CPU time goes (cProfile's top functions by own and cumulative time, or pyinstrument's call
tree), plus the CPU microseconds per request. What it leaves out is the server's share
(uvicorn's h11 parsing and the socket writes): the same for every app.

APP is a ``bench/apps`` module name (default ``fullstack_saasfw``).

``--ablate`` instead builds the saasfw app once per piece left out
(``BENCH_SAASFW_OFF``, see ``apps/fullstack_saasfw.py``), all in one process, drives them
in small interleaved batches, and prints each variant's CPU microseconds per request: what
a piece costs is the full stack's figure minus the figure without it.
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
    headers, stop = await _started(app)
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
    await stop()


ABLATIONS = [
    ("full stack (as create_app builds it)", ""),
    ("observability (id, span, metrics, access line)", "observability"),
    ("authentication + RBAC (require)", "auth"),
    ("rate limit (memory)", "rate_limiting"),
    ("security headers + CORS", "security_headers"),
    ("request size limits", "request_limits"),
    ("health-probe dispatch", "health"),
    ("problem+json error middleware", "problem_details"),
]
EVERYTHING = ",".join(sorted({piece for _, off in ABLATIONS for piece in off.split(",") if piece}))


def _load_variant(module: str, off: str, index: int) -> ASGI:
    """Import a fresh copy of ``apps/<module>.py`` built with ``BENCH_SAASFW_OFF=off``."""
    import importlib.util

    path = Path(__file__).resolve().parent / "apps" / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"apps._variant_{index}", path)
    assert spec is not None
    assert spec.loader is not None
    variant = importlib.util.module_from_spec(spec)
    os.environ["BENCH_SAASFW_OFF"] = off
    try:
        spec.loader.exec_module(variant)
    finally:
        os.environ.pop("BENCH_SAASFW_OFF", None)
    app: ASGI = variant.app
    if module == "observability_bare":
        # Alone in its process the bare app sees no tracer provider; here the saasfw
        # variants install one globally, which would switch FastAPI's native tracing on.
        app._telemetry["tracing"] = False  # type: ignore[attr-defined]
    return app


async def _started(app: ASGI) -> tuple[list[tuple[bytes, bytes]], Callable[[], Awaitable[None]]]:
    """Run ``app``'s lifespan start-up; return its auth headers and a shutdown callable."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise SystemExit(f"lifespan failed: {started}")
    headers: list[tuple[bytes, bytes]] = []
    status, body = await _request(app, "/__bench__/token", [])
    if status == 200:
        headers = [(b"authorization", f"Bearer {json.loads(body)['access_token']}".encode())]

    async def stop() -> None:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task

    return headers, stop


async def _ablate(requests: int, batch: int) -> dict[str, Any]:
    """Every variant in one process, driven in small interleaved batches.

    Interleaving at a fraction of a second makes drifts in the machine's load hit every
    variant alike, which separate processes measured one after another do not.
    """
    variants = [("bare FastAPI", "observability_bare", "")]
    variants += [(label, "fullstack_saasfw", off) for label, off in ABLATIONS]
    variants.append(("create_app with every piece above off", "fullstack_saasfw", EVERYTHING))
    apps = [_load_variant(module, off, i) for i, (_, module, off) in enumerate(variants)]
    running = [await _started(app) for app in apps]
    for app, (headers, _) in zip(apps, running, strict=True):
        for _ in range(300):
            status, body = await _request(app, "/", headers)
        if status != 200:
            raise SystemExit(f"GET / answered {status}: {body[:300]!r}")
    import gc
    import random

    # Garbage collection is paused while a batch is timed and run between rounds: a
    # collection is paid by whichever variant happens to trigger it, and with ten apps'
    # objects alive in one process that would swamp the pieces being compared.
    gc.collect()
    gc.freeze()
    cpu = [0.0] * len(apps)
    order = list(range(len(apps)))
    done = 0
    while done < requests:
        random.shuffle(order)  # no variant always runs right after the same one
        gc.collect()
        gc.disable()
        for i in order:
            app, (headers, _) = apps[i], running[i]
            started = time.process_time()
            for _ in range(batch):
                await _request(app, "/", headers)
            cpu[i] += time.process_time() - started
        gc.enable()
        done += batch
    per = [c / done * 1e6 for c in cpu]
    bare, full = per[0], per[1]
    print(f"{done} requests per variant, interleaved in batches of {batch}")
    print(f"{variants[0][0]:<50} {bare:>6.0f} us CPU per request")
    print(f"{variants[1][0]:<50} {full:>6.0f} us  (+{full - bare:.0f} over bare)")
    for (label, _, _), cost in zip(variants[2:-1], per[2:-1], strict=True):
        print(f"  without {label:<42} {cost:>6.0f} us  (saves {full - cost:.0f})")
    print(f"{variants[-1][0]:<50} {per[-1]:>6.0f} us")
    for _, stop in running:
        await stop()
    rows = [
        {"variant": label, "off": off, "cpu_us": round(cost, 1)}
        for (label, _, off), cost in zip(variants, per, strict=True)
    ]
    return {"requests": done, "batch": batch, "variants": rows}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", nargs="?", default="fullstack_saasfw")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument(
        "--profiler", choices=("cprofile", "pyinstrument", "none"), default="pyinstrument"
    )
    parser.add_argument("--ablate", action="store_true", help="cost of each piece")
    parser.add_argument("--batch", type=int, default=50, help="--ablate: requests per turn")
    parser.add_argument("--json", type=Path, help="--ablate: also write the figures here")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.ablate:
        with tempfile.TemporaryDirectory(prefix="saasfw-profile-") as tmp:
            os.environ.setdefault("BENCH_TMP", tmp)
            result = asyncio.run(_ablate(args.requests, args.batch))
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    with tempfile.TemporaryDirectory(prefix="saasfw-profile-") as tmp:
        os.environ.setdefault("BENCH_TMP", tmp)
        module = importlib.import_module(f"apps.{args.app}")
        asyncio.run(_run(module.app, args.requests, args.profiler))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
