"""One app in one process, driven through ASGI: the part of the instruction benchmark that
runs under callgrind (``measure``), and the conformance probe (``conform``).

``python bench/cg_worker.py measure APP --n1 N --n2 N --warmup N --out FILE``
    Start the app's lifespan, ``gc.collect()`` then ``gc.freeze()`` (for every app), start
    callgrind's counting, then for each token mode (``reuse``: one token for every
    request; ``fresh``: a new token per request, minted beforehand) run a warm-up and two
    windows of N1 and N2 requests. Each window is ``GET /`` N times, then ``flush()`` so
    the spans, metrics and access lines it caused are exported inside the window; a
    labelled callgrind dump closes it. Everything between windows (minting tokens,
    reading counters, Redis's INFO) falls into ``gap`` dumps the harness ignores. The
    figures the harness checks (statuses, work counters, Redis command statistics per
    window) go to FILE as JSON.

``python bench/cg_worker.py conform APP --limit N``
    Print as JSON what the app answers to the conformance requests (valid token, no
    token, token without the permission, then requests until the limit refuses) and how
    many spans, metric samples and access lines it exported for them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import os
import sys
import tempfile
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _marker import Marker
from apps import drive
from apps.subject import OTHER, READ, SECURITY_HEADERS, Subject

SUBJECTS = {
    "null": ("apps.subject_bare", "null"),
    "starlette": ("apps.subject_bare", "starlette"),
    "fastapi": ("apps.subject_bare", "fastapi"),
    "litestar": ("apps.subject_litestar", "litestar"),
    "popular": ("apps.subject_popular", "popular"),
    "saasfw-single": ("apps.subject_saasfw", "single"),
    "saasfw-fleet": ("apps.subject_saasfw", "fleet"),
}
MEASURE_LIMIT = 1_000_000_000  # per minute: every request is checked, none refused
CONFORM_LIMIT = 10  # per minute: reached within the conformance requests
ALLOWED = 4  # conformance requests with a valid token before the refusals


def build(name: str, limit: int, tmp: str) -> Subject:
    module, attr = SUBJECTS[name]
    subject: Subject = getattr(importlib.import_module(module), attr)(limit, tmp)
    return subject


def counts(subject: Subject) -> dict[str, float]:
    """The subject's work counters; spans from the OTLP receiver when it exports there."""
    found = subject.counts()
    receiver = os.environ.get("BENCH_OTLP_URL")
    if "spans" not in found and subject.featured and receiver:
        with urllib.request.urlopen(f"{receiver}/counts", timeout=30) as resp:  # noqa: S310
            found["spans"] = float(json.loads(resp.read())["spans"])
    return found


def redis_stats(url: str | None) -> dict[str, dict[str, float]]:
    """Redis's ``INFO commandstats``: calls and microseconds per command."""
    if url is None:
        return {}
    import redis

    client = redis.Redis.from_url(url)
    try:
        info = client.info("commandstats")
    finally:
        client.close()
    return {
        key.removeprefix("cmdstat_"): {"calls": float(v["calls"]), "usec": float(v["usec"])}
        for key, v in info.items()
        if key != "cmdstat_info"
    }


async def _window(subject: Subject, headers: list[drive.Headers]) -> list[int]:
    """The measured loop: ``GET /`` once per header list; the statuses other than 200."""
    app, bad = subject.app, []
    for each in headers:
        status = await drive.status_only(app, "/", each)
        if status != 200:
            bad.append(status)
    subject.flush()
    return bad


async def measure(name: str, n1: int, n2: int, warmup: int, modes: list[str]) -> dict[str, Any]:
    marker = Marker()
    with tempfile.TemporaryDirectory(prefix="saasfw-bench-cg-") as tmp:
        os.environ["BENCH_TMP"] = tmp
        subject = build(name, MEASURE_LIMIT, tmp)
        stop = await drive.started(subject.app)
        gc.collect()
        gc.freeze()
        marker.start()
        windows: list[dict[str, Any]] = []
        for mode in modes if subject.featured else ["reuse"]:
            token = await subject.mint(READ) if subject.mint else None
            for label, n in (("warmup", warmup), ("n1", n1), ("n2", n2)):
                if mode == "fresh" and subject.mint is not None:
                    headers = [drive.bearer(await subject.mint(READ)) for _ in range(n)]
                else:
                    headers = [drive.bearer(token)] * n
                before, redis_before = counts(subject), redis_stats(subject.redis_url)
                marker.dump(f"gap {mode} {label}")
                bad = await _window(subject, headers)
                marker.dump(f"window {mode} {label} {n}")
                after, redis_after = counts(subject), redis_stats(subject.redis_url)
                windows.append(
                    {
                        "mode": mode,
                        "label": label,
                        "n": n,
                        "non_200": len(bad),
                        "statuses": bad,
                        "work": {k: after[k] - before.get(k, 0.0) for k in after},
                        "redis": _redis_delta(redis_before, redis_after),
                    }
                )
        marker.dump("gap shutdown")
        await stop()
    return {"app": name, "featured": subject.featured, "windows": windows}


def _redis_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    out = {}
    for command, now in after.items():
        then = before.get(command, {"calls": 0.0, "usec": 0.0})
        calls, usec = now["calls"] - then["calls"], now["usec"] - then["usec"]
        if calls > 0:
            out[command] = {"calls": calls, "usec": usec}
    return out


async def conform(name: str, limit: int) -> dict[str, Any]:
    """The conformance requests and what the app answered."""
    with tempfile.TemporaryDirectory(prefix="saasfw-bench-conform-") as tmp:
        os.environ["BENCH_TMP"] = tmp
        subject = build(name, limit, tmp)
        stop = await drive.started(subject.app)
        try:
            return await _conform(subject, limit)
        finally:
            await stop()


async def _conform(subject: Subject, limit: int) -> dict[str, Any]:
    app = subject.app
    answers: dict[str, Any] = {}

    def keep(case: str, status: int, headers: dict[str, str], body: bytes) -> None:
        answers[case] = {
            "status": status,
            "security_headers": {k: headers.get(k) for k in SECURITY_HEADERS},
            "body": body.decode(errors="replace")[:200],
        }

    token = await subject.mint(READ) if subject.mint else None
    # Allowed requests: each must export one span, one metric sample and one access line.
    before = counts(subject)
    for _ in range(ALLOWED):
        keep("with_token", *await drive.request(app, "/", drive.bearer(token)))
    subject.flush()
    allowed = {k: v - before.get(k, 0.0) for k, v in counts(subject).items()}
    refused: dict[str, float] = {}
    statuses: list[int] = []
    if subject.mint is not None:
        # Refusals: each must export one span and one metric sample.
        before = counts(subject)
        keep("without_token", *await drive.request(app, "/", []))
        other = await subject.mint(OTHER)
        keep("wrong_permission", *await drive.request(app, "/", drive.bearer(other)))
        subject.flush()
        refused = {k: v - before.get(k, 0.0) for k, v in counts(subject).items()}
        for _ in range(limit + 5):
            status, headers, body = await drive.request(app, "/", drive.bearer(token))
            statuses.append(status)
            if status == 429:
                keep("past_limit", status, headers, body)
                break
    return {
        "app": subject.name,
        "featured": subject.featured,
        "allowed": {"requests": ALLOWED, "work": allowed},
        "refused": {"requests": 2, "work": refused},
        "answers": answers,
        "until_limit": statuses,
    }


async def pyprofile(name: str, n: int, warmup: int, mode: str) -> dict[str, Any]:
    """Bytecodes per request by package and function (``_opcodes``), ``mode`` tokens."""
    from _opcodes import OpcodeCounter

    with tempfile.TemporaryDirectory(prefix="saasfw-bench-pyprofile-") as tmp:
        os.environ["BENCH_TMP"] = tmp
        subject = build(name, MEASURE_LIMIT, tmp)
        stop = await drive.started(subject.app)
        gc.collect()
        gc.freeze()
        token = await subject.mint(READ) if subject.mint else None
        await _window(subject, [drive.bearer(token)] * warmup)
        if mode == "fresh" and subject.mint is not None:
            headers = [drive.bearer(await subject.mint(READ)) for _ in range(n)]
        else:
            headers = [drive.bearer(token)] * n
        with _redis_callers() as callers, OpcodeCounter() as counter:
            bad = await _window(subject, headers)
        await stop()
    if bad:
        raise RuntimeError(f"{name}: {bad} answers were not 200")
    redis_calls = [
        {"command": cmd, "caller": caller, "per_request": count / n}
        for (cmd, caller), count in callers.most_common()
    ]
    return {
        "app": name,
        "mode": mode,
        "requests": n,
        "redis_calls": redis_calls,
        **counter.summary(n, top=80),
    }


@contextlib.contextmanager
def _redis_callers() -> Iterator[Counter[tuple[str, str]]]:
    """Count Redis commands by name and the nearest saasfw (or limits) function that sent them."""
    found: Counter[tuple[str, str]] = Counter()
    try:
        from redis.asyncio.client import Redis
    except ImportError:
        yield found
        return
    original = Redis.execute_command

    async def counted(self: Any, *args: Any, **options: Any) -> Any:
        frame = sys._getframe(1)
        caller = "?"
        while frame is not None:
            name = frame.f_code.co_filename
            if "/saasfw/" in name or "/limits/" in name:
                module = (
                    "limits"
                    if "/limits/" in name
                    else "saasfw." + name.split("/saasfw/")[1].split("/")[0]
                )
                caller = f"{module}: {frame.f_code.co_qualname}"
                break
            frame = frame.f_back
        found[(str(args[0]).upper(), caller)] += 1
        return await original(self, *args, **options)

    Redis.execute_command = counted  # type: ignore[method-assign]
    try:
        yield found
    finally:
        Redis.execute_command = original  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("measure", "conform", "pyprofile"))
    parser.add_argument("app", choices=sorted(SUBJECTS))
    parser.add_argument("--n1", type=int, default=100)
    parser.add_argument("--n2", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--modes", default="reuse,fresh")
    parser.add_argument("--limit", type=int, default=CONFORM_LIMIT, help="conform: per minute")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.action == "measure":
        modes = args.modes.split(",")
        result = asyncio.run(measure(args.app, args.n1, args.n2, args.warmup, modes))
    elif args.action == "pyprofile":
        result = asyncio.run(pyprofile(args.app, args.n2, args.warmup, args.modes))
    else:
        result = asyncio.run(conform(args.app, args.limit))
    text = json.dumps(result, indent=1)
    if args.out is not None:
        args.out.write_text(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
