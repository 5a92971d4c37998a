"""Instructions per request, counted by callgrind: every app against bare FastAPI.

``python bench/bench_instructions.py [--smoke] [--apps A B ...] [--json PATH] [--docs]``
(also ``python bench/run.py --callgrind``)

Each app runs in its own process under ``valgrind --tool=callgrind`` and is driven through
ASGI, no sockets (``cg_worker.py``): after start-up and a warm-up, one window of N1 and one
of N2 requests, each ending with the app flushing its spans, metrics and access lines, so
deferred work is counted in the window that caused it. Instructions per request =
(I(N2) - I(N1)) / (N2 - N1): start-up, the warm-up and everything constant per window
cancel out. Every app gets ``gc.collect(); gc.freeze()`` after start-up. Apps with
authentication run twice: one token reused for every request (``reuse``), and a new
token on every request, minted outside the windows (``fresh``).

Apps: ``null`` (the driver alone: what every figure includes besides the app),
``starlette`` and ``fastapi`` (bare), ``litestar``, ``popular`` (FastAPI + add-ons),
``saasfw-single`` (the full stack in one process, memory stores) and ``saasfw-fleet``
(Redis rate limits and revocation on a private redis-server, spans over OTLP/HTTP to a
local receiver that discards). ``apps/subject_*.py`` describe each.

Before counting, every app is checked to do its work: all answers 200, and in every
window the spans exported, metric samples and access lines written each equal the
requests sent. Redis's own time (``INFO commandstats``) is reported per request next to
the fleet's instructions, so work moved into Redis stays visible.

Each app is counted twice: driven through ASGI in process (``cg_worker.py``: the app's
own cost) and served by uvicorn (h11) loaded over one keep-alive HTTP connection from
outside valgrind (``cg_serve.py``: the app plus the server's work per request, which is
what a deployment pays). ``--transport`` picks one.

``--smoke``: tiny windows, saasfw in process and Starlette over HTTP (proves the counter
works both ways; under a minute), plus the conformance check;
``--repeat``: measure the app with the fewest instructions a second time and report the
spread; ``--docs``: rewrite the table and chart in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _callgrind import CallgrindError, Run, load, run, run_http  # noqa: E402
from _services import Receiver, redis_server  # noqa: E402

APPS = ["null", "starlette", "fastapi", "litestar", "popular", "saasfw-single", "saasfw-fleet"]
BASELINE = "fastapi"
LABELS = {
    "null": "the driver alone (no app)",
    "starlette": "bare Starlette",
    "fastapi": "bare FastAPI (baseline)",
    "litestar": "Litestar + its contribs",
    "popular": "popular assembly (FastAPI + add-ons)",
    "saasfw-single": "saasfw full stack, one process",
    "saasfw-fleet": "saasfw fleet shape (Redis, OTLP)",
}
WORK = ("spans", "metric_samples", "log_lines")


class WorkError(RuntimeError):
    """An app skipped work it should have done, or answered something other than 200."""


def _check(result: Run) -> list[str]:
    """Fail unless every window answered 200 and did one unit of each work per request."""
    notes = []
    for window in result.worker["windows"]:
        tag = f"{result.app} {window['mode']} {window['label']}"
        if window["non_200"]:
            raise WorkError(
                f"{tag}: {window['non_200']} of {window['n']} answers were not 200: "
                f"{window.get('statuses', '?')}"
            )
        if result.worker["featured"]:
            for key in WORK:
                done = window["work"].get(key)
                if done != window["n"]:
                    raise WorkError(f"{tag}: {key} advanced by {done}, not {window['n']}")
        label = f"window {window['mode']} {window['label']} {window['n']}"
        if label not in result.windows:
            raise CallgrindError(f"{tag}: no callgrind dump labelled {label!r}")
    if result.worker["featured"]:
        notes.append("every window: one span, one metric sample, one access line per request")
    return notes


def per_request(result: Run, mode: str) -> dict[str, Any]:
    windows = {w["label"]: w for w in result.worker["windows"] if w["mode"] == mode}
    n1, n2 = windows["n1"]["n"], windows["n2"]["n"]
    i1 = result.windows[f"window {mode} n1 {n1}"]
    i2 = result.windows[f"window {mode} n2 {n2}"]
    figure: dict[str, Any] = {"per_request": (i2 - i1) / (n2 - n1), "i_n1": i1, "i_n2": i2}
    redis1, redis2 = windows["n1"]["redis"], windows["n2"]["redis"]
    if redis2:
        figure["redis"] = _redis_figure(redis1, redis2, n2 - n1)
    return figure


def _parse_key(key: str) -> tuple[str, str]:
    """``name[#copy][@http]`` -> (app name, transport)."""
    name, _, transport = key.partition("@")
    return name.split("#")[0], transport or "asgi"


SCRIPTS = {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"}


def _redis_figure(
    redis1: dict[str, dict[str, float]], redis2: dict[str, dict[str, float]], span: int
) -> dict[str, Any]:
    """Redis per request from ``INFO commandstats`` read around both windows.

    Commands a Lua script runs count in commandstats too, and their time is inside the
    script's own (``EVALSHA``) time: ``calls_per_request`` counts commands executed, not
    round trips, and ``usec_per_request`` adds the scripts' time to that of the commands
    outside scripts (``cg_profile.py`` lists the round trips and who sends them).
    ``INFO cpu`` is not used: Redis's idle housekeeping accrues over the long windows
    valgrind makes and would be billed to the requests.
    """
    zero = {"calls": 0.0, "usec": 0.0}
    commands = {}
    for command, after in redis2.items():
        if command.startswith("("):
            continue
        before = redis1.get(command, zero)
        commands[command] = {
            "calls_per_request": (after["calls"] - before["calls"]) / span,
            "usec_per_request": (after["usec"] - before["usec"]) / span,
            "usec_per_call": after["usec"] / after["calls"] if after["calls"] else 0.0,
        }
    return {
        "commands": commands,
        "calls_per_request": sum(c["calls_per_request"] for c in commands.values()),
        "script_usec_per_request": sum(
            c["usec_per_request"] for k, c in commands.items() if k in SCRIPTS
        ),
    }


def measure(
    apps: list[str],
    *,
    n1: int,
    n2: int,
    warmup: int,
    jobs: int,
    work_dir: Path,
    failures: list[str],
) -> dict[str, Run]:
    """Run every app under callgrind (``jobs`` at a time); check each did its work.

    Apps that fail are left out of the result and described in ``failures``.

    An app key is ``name`` (driven through ASGI), ``name@http`` (served by uvicorn and
    loaded over HTTP), with ``#2`` for a second measurement of the same app.
    """
    results: dict[str, Run] = {}
    with redis_server() as (redis_url, redis_where):
        print(f"fleet shape: Redis is a {redis_where}; an OTLP receiver of its own per run")

        def one(key: str) -> Run | Exception:
            started = time.monotonic()
            name, transport = _parse_key(key)
            runner = run_http if transport == "http" else run
            directory = work_dir / key.replace("#", "-").replace("@", "-")
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "key.txt").write_text(key)
            try:
                # Its own receiver: runs at the same time would count each other's spans.
                with Receiver() as receiver:
                    env = {"BENCH_OTLP_URL": receiver.url, "BENCH_REDIS_URL": redis_url}
                    got = runner(
                        name,
                        directory,
                        n1=n1,
                        n2=n2,
                        warmup=warmup,
                        modes="reuse,fresh",
                        env=env,
                    )
                got.app = key
                _check(got)
            except (CallgrindError, WorkError) as exc:
                print(f"  {key:<20} FAILED: {exc}", flush=True)
                return exc
            print(f"  {key:<20} counted in {time.monotonic() - started:.0f}s", flush=True)
            return got

        # One app failing does not discard the others' figures; the run still fails.
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for key, got in zip(apps, pool.map(one, apps), strict=True):
                if isinstance(got, Exception):
                    failures.append(f"{key}: {got}")
                else:
                    results[key] = got
    return results


def rebuild(directory: Path) -> dict[str, Run]:
    """The runs a ``--keep`` directory holds, checked again, in the order they were counted."""
    results: dict[str, Run] = {}
    order = {key: i for i, key in enumerate(APPS)}
    runs = [load(sub) for sub in sorted(directory.iterdir()) if (sub / "worker.json").exists()]
    runs.sort(key=lambda r: ("#" in r.app, "@http" in r.app, order.get(_parse_key(r.app)[0], 99)))
    for got in runs:
        _check(got)
        results[got.app] = got
    return results


def summarise(results: dict[str, Run], *, n1: int, n2: int, warmup: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    bases = {
        transport: per_request(results[key], "reuse")["per_request"]
        for transport, key in (("asgi", BASELINE), ("http", f"{BASELINE}@http"))
        if key in results
    }
    for key, result in results.items():
        if "#" in key:
            continue
        app, transport = _parse_key(key)
        base = bases.get(transport)
        modes = ["reuse", "fresh"] if result.worker["featured"] else ["reuse"]
        for mode in modes:
            figure = per_request(result, mode)
            row = {"app": app, "transport": transport, "mode": mode, **figure}
            row["ratio"] = base / figure["per_request"] if base and app != "null" else None
            rows.append(row)
    data: dict[str, Any] = {
        "baseline": BASELINE,
        "n1": n1,
        "n2": n2,
        "warmup": warmup,
        "rows": rows,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
    }
    by = {(r["app"], r["transport"], r["mode"]): r["per_request"] for r in rows}
    fleet = {
        f"{transport} {mode}": by[("saasfw-fleet", transport, mode)]
        / by[("saasfw-single", transport, mode)]
        for transport in ("asgi", "http")
        for mode in ("reuse", "fresh")
        if ("saasfw-fleet", transport, mode) in by and ("saasfw-single", transport, mode) in by
    }
    if fleet:
        data["fleet_over_single"] = fleet
    repeats = [key for key in results if "#" in key]
    if repeats:
        first = repeats[0].split("#")[0] + ("@http" if "@http" in repeats[0] else "")
        figures = [per_request(results[k], "reuse")["per_request"] for k in [first, *repeats]]
        data["repeat"] = {
            "app": first,
            "per_request": figures,
            "spread": (max(figures) - min(figures)) / statistics.mean(figures),
        }
    return data


def _redis_text(redis: dict[str, Any], micro: str = "µs") -> str:
    """Commands per request with their time per call, costliest first."""
    top = sorted(redis["commands"].items(), key=lambda kv: -kv[1]["usec_per_request"])[:4]
    calls = ", ".join(
        f"{cmd.upper()} {c['calls_per_request']:.1f} x {c['usec_per_call']:.1f} {micro}"
        for cmd, c in top
    )
    return f"{redis['calls_per_request']:.1f} commands: {calls}"


def report(data: dict[str, Any]) -> None:
    print(f"\n{'app':<16} {'via':<5} {'token':<6} {'instructions/request':>21} {'ratio':>6}  Redis")
    for row in data["rows"]:
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        redis = row.get("redis")
        extra = _redis_text(redis, "us") if redis else ""
        print(
            f"{row['app']:<16} {row.get('transport', 'asgi'):<5} {row['mode']:<6} "
            f"{row['per_request']:>21,.0f} {ratio:>6}  {extra}"
        )
    for key, ratio in data.get("fleet_over_single", {}).items():
        print(f"saasfw-fleet / saasfw-single instructions ({key} token): {ratio:.3f}")
    if "repeat" in data:
        rep = data["repeat"]
        print(
            f"{rep['app']} measured twice: {', '.join(f'{f:,.0f}' for f in rep['per_request'])}"
            f" instructions/request, spread {rep['spread'] * 100:.2f}%"
        )


def conformance(apps: list[str]) -> dict[str, Any]:
    """Each featured app's answers to the conformance requests (see tests/)."""
    out: dict[str, Any] = {}
    with (
        Receiver() as receiver,
        redis_server() as (redis_url, _),
        tempfile.TemporaryDirectory(prefix="saasfw-bench-conform-") as tmp,
    ):
        env = {**os.environ, "BENCH_OTLP_URL": receiver.url, "BENCH_REDIS_URL": redis_url}

        def probe(app: str) -> dict[str, Any]:
            result = Path(tmp) / f"{app}.json"
            cmd = [sys.executable, str(BENCH / "cg_worker.py"), "conform", app, f"--out={result}"]
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, check=False, timeout=300
            )
            if proc.returncode != 0 or not result.exists():
                raise WorkError(f"{app}: the conformance probe failed:\n{proc.stderr[-3000:]}")
            found: dict[str, Any] = json.loads(result.read_text())
            return found

        with ThreadPoolExecutor(max_workers=2) as pool:
            out = dict(zip(apps, pool.map(probe, apps), strict=True))
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny windows, two runs, and the conformance check"
    )
    parser.add_argument("--apps", nargs="*", default=None, help=f"default: {APPS}")
    parser.add_argument("--n1", type=int, default=100)
    parser.add_argument("--n2", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=2, help="callgrind runs at a time")
    parser.add_argument("--repeat", action="store_true", help="measure the leanest app twice")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--docs", action="store_true", help="rewrite docs/benchmarks.md's table")
    parser.add_argument("--keep", type=Path, help="keep the callgrind dumps in this directory")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile saasfw's shapes (cg_profile.py); written next to --json",
    )
    parser.add_argument(
        "--rebuild",
        type=Path,
        help="count nothing: recompute the figures from a directory --keep left",
    )
    parser.add_argument(
        "--transport",
        choices=("asgi", "http", "both"),
        default="both",
        help="drive through ASGI in process, serve with uvicorn over HTTP, or both",
    )
    args = parser.parse_args(argv)
    names = args.apps or APPS
    if not args.smoke and BASELINE not in names:
        names = [BASELINE, *names]
    apps = [n for n in names if args.transport != "http"]
    apps += [f"{n}@http" for n in names if args.transport != "asgi"]
    if args.smoke:
        args.n1, args.n2, args.warmup = 3, 8, 3
        apps = args.apps or ["saasfw-single", "starlette@http"]
    if args.repeat:
        apps = [*apps, "starlette#2" if "starlette" in apps else f"{apps[0]}#2"]
    started = time.monotonic()
    print(f"callgrind: {len(apps)} runs, windows of {args.n1} and {args.n2} requests", flush=True)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="saasfw-bench-callgrind-") as tmp,
            ThreadPoolExecutor(max_workers=1) as side,
        ):
            # The smoke run also checks conformance, alongside the counting (CI runs it).
            conform = (
                side.submit(conformance, [a for a in APPS if a != "null"]) if args.smoke else None
            )
            work_dir = args.keep or Path(tmp)
            failures: list[str] = []
            if args.rebuild is not None:
                work_dir = args.rebuild
                results = rebuild(args.rebuild)
            else:
                results = measure(
                    apps,
                    n1=args.n1,
                    n2=args.n2,
                    warmup=args.warmup,
                    jobs=args.jobs,
                    work_dir=work_dir,
                    failures=failures,
                )
            data = summarise(results, n1=args.n1, n2=args.n2, warmup=args.warmup)
            if args.rebuild is not None:
                newest = max(
                    (d / "worker.json").stat().st_mtime
                    for d in args.rebuild.iterdir()
                    if (d / "worker.json").exists()
                )
                data["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(newest))
            profiled = None
            if args.profile:
                from cg_profile import profile, show

                shapes = [a for a in ("saasfw-single", "saasfw-fleet") if a in results]
                profiled = profile(work_dir, shapes, 200)
                show(profiled)
            if conform is not None:
                from conformance import problems

                found = problems(conform.result())
                if found:
                    raise WorkError("the apps do not conform:\n  " + "\n  ".join(found))
                print(f"conformance: {len(conform.result())} apps answer alike and do the work")
    except (CallgrindError, WorkError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report(data)
    print(f"done in {time.monotonic() - started:.0f}s")
    if failures:
        print("failed:\n  " + "\n  ".join(failures), file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        if profiled is not None:
            path = args.json.with_name(args.json.stem + "-profile.json")
            path.write_text(json.dumps(profiled, indent=1) + "\n")
    if args.docs:
        from instructions_docs import write_docs

        write_docs(data, profiled)
    return 2 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
