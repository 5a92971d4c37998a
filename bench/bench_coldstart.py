"""Cold start: importing ``saasfw.app`` and building the example orders service, against
importing FastAPI and building a bare app; and resident memory once started.

``python bench/bench_coldstart.py [--smoke] [--rounds N] [--json PATH]``

``fastapi-sqla`` is informative: bare FastAPI plus the persistence libraries the example
uses (SQLAlchemy's asyncio engine on aiosqlite, Alembic), to show how much of the gap is
the database stack rather than saasfw.

Each sample is a fresh interpreter running ``apps/coldstart_probe.py`` (the two apps
alternate, so drifts in machine load hit both alike). The probe times the framework
import and the app build (wall clock and CPU), then runs the app's start-up (its ASGI
lifespan: for the example, SQLite migrations, development keys and the audit log in a
fresh data directory) and serves one request, and reads its resident memory (VmRSS).
The report is each figure's median and the ratio saasfw / FastAPI.

Modules that only development tools bring into the workspace environment (``rich`` and
``pygments``, through bandit and schemathesis; structlog and Mako import them whenever
they can) are hidden from both apps, as in a production install of ``saasfw[all]``;
``--keep-dev-modules`` measures them too.
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
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PROBE = BENCH_DIR / "apps" / "coldstart_probe.py"
APPS = ("fastapi", "fastapi-sqla", "saasfw")
DEV_ONLY_MODULES = "rich,pygments"
FIGURES = [
    ("import_s", "import (s)"),
    ("build_s", "build app (s)"),
    ("import_build_s", "import + build (s)"),
    ("import_build_cpu_s", "import + build, CPU (s)"),
    ("startup_s", "start-up + 1st request (s)"),
    ("cold_start_s", "all: import to 1st answer (s)"),
    ("rss_built_mb", "RSS after build (MB)"),
    ("rss_mb", "RSS after start-up (MB)"),
]


def _sample(which: str, hide: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="saasfw-coldstart-") as data_dir:
        env = {
            **os.environ,
            "BENCH_HIDE_MODULES": hide,
            "SAASFW_DATA_DIR": data_dir,
            "PYTHONDONTWRITEBYTECODE": "",
        }
        env.pop("SAASFW_ENV", None)
        done = subprocess.run(
            [sys.executable, str(PROBE), which],
            env=env,
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
    line = next((x for x in done.stdout.splitlines() if x.startswith("COLDSTART ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"{which} probe failed ({done.returncode}):\n{done.stderr[-3000:]}")
    data: dict[str, float] = json.loads(line.removeprefix("COLDSTART "))
    data["import_build_s"] = data["import_s"] + data["build_s"]
    # The whole cold start: work moved from the build into the start-up (a lazy import
    # the lifespan needs anyway) shows here, not as a saving.
    data["cold_start_s"] = data["import_build_s"] + data["startup_s"]
    data["rss_built_mb"] = data["rss_built_kb"] / 1024
    data["rss_mb"] = data["rss_kb"] / 1024
    return data


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one sample each")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--keep-dev-modules", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    rounds = 1 if args.smoke else args.rounds
    hide = "" if args.keep_dev_modules else DEV_ONLY_MODULES
    with open("/proc/loadavg") as handle:
        load_before = " ".join(handle.read().split()[:3])
    samples: dict[str, list[dict[str, float]]] = {app: [] for app in APPS}
    # One untimed sample each first: compiled bytecode written, files in the page cache.
    for app in APPS:
        _sample(app, hide)
    for round_no in range(1, rounds + 1):
        for app in APPS:
            sample = _sample(app, hide)
            samples[app].append(sample)
            print(
                f"  round {round_no} {app:<12} import+build {sample['import_build_s']:.2f}s "
                f"start-up {sample['startup_s']:.2f}s RSS {sample['rss_mb']:.0f} MB",
                flush=True,
            )
    medians = {
        app: {key: statistics.median(s[key] for s in samples[app]) for key, _ in FIGURES}
        for app in APPS
    }
    print(
        f"\n{'median of ' + str(rounds):<30} {'fastapi':>9} {'+sqla':>9} {'saasfw':>9} "
        f"{'ratio':>7} {'vs +sqla':>8}"
    )
    rows = []
    for key, label in FIGURES:
        base, sqla, ours = (medians[app][key] for app in APPS)
        ratio = ours / base if base else 0.0
        ratio_sqla = ours / sqla if sqla else 0.0
        print(
            f"{label:<30} {base:>9.3f} {sqla:>9.3f} {ours:>9.3f} {ratio:>7.2f} {ratio_sqla:>8.2f}"
        )
        rows.append(
            {
                "figure": key,
                "label": label,
                "fastapi": base,
                "fastapi_sqla": sqla,
                "saasfw": ours,
                "ratio": ratio,
                "ratio_to_fastapi_sqla": ratio_sqla,
            }
        )
    with open("/proc/loadavg") as handle:
        load_after = " ".join(handle.read().split()[:3])
    print(f"load average before {load_before}, after {load_after}")
    if args.json is not None:
        result = {
            "rounds": rounds,
            "hidden_modules": hide,
            "figures": rows,
            "samples": samples,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
