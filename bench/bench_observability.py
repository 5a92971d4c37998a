"""Throughput of a FastAPI hello endpoint: bare, with the popular observability assembly,
and with saasfw-observability doing the same work; each as a ratio to bare FastAPI.

``python bench/bench_observability.py [--smoke] [--rounds N] [--duration S]``
"""

from __future__ import annotations

import argparse
import sys

from _http import App, BenchError, compare

APPS = [
    App("bare", "apps.observability_bare:app"),
    App("popular", "apps.observability_popular:app"),
    App("saasfw", "apps.observability_saasfw:app"),
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="about a second per app")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args(argv)
    try:
        compare(
            APPS,
            baseline="bare",
            rounds=args.rounds,
            duration=args.duration,
            connections=args.connections,
            smoke=args.smoke,
        )
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
