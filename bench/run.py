"""One entry point for every benchmark in bench/: ``python bench/run.py [--smoke] [NAME ...]``.

Each ``bench/bench_<name>.py`` is a standalone script that measures its subject against a
baseline in the same run and prints ratios. ``--smoke`` runs each for a second or two with
no assertion on speed, so CI keeps them from rotting; without it they run their full,
interleaved rounds (minutes; run them on a quiet machine).

``--callgrind`` runs the instruction-count benchmark in full instead (``bench_instructions.py``:
every app under callgrind, the leanest twice for the spread, saasfw's profile) and writes
its figures to ``bench/results/instructions*.json`` and its table, profile and chart into
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def discover() -> dict[str, Path]:
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH.glob("bench_*.py"))}


def main(argv: list[str]) -> int:
    found = discover()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks (default: all of {sorted(found)})")
    parser.add_argument("--smoke", action="store_true", help="a few seconds each, no assertions")
    parser.add_argument(
        "--callgrind", action="store_true", help="instructions per request, full; update the docs"
    )
    args = parser.parse_args(argv)
    if args.callgrind:
        cmd = [sys.executable, str(BENCH / "bench_instructions.py"), "--repeat", "--profile"]
        cmd += ["--json", str(BENCH / "results" / "instructions.json"), "--docs"]
        return subprocess.run(cmd, cwd=BENCH.parent, check=False).returncode
    unknown = sorted(set(args.names) - set(found))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {sorted(found)}")
    failed: list[str] = []
    for name in args.names or sorted(found):
        started = time.monotonic()
        print(f"\n--- bench {name}{' (smoke)' if args.smoke else ''}", flush=True)
        cmd = [sys.executable, str(found[name])] + (["--smoke"] if args.smoke else [])
        code = subprocess.run(cmd, cwd=BENCH.parent, check=False).returncode
        print(f"--- bench {name}: exit {code} after {time.monotonic() - started:.1f}s", flush=True)
        if code != 0:
            failed.append(name)
    if failed:
        print(f"benchmarks failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
