"""Where saasfw's instructions go per request, in each shape and token mode.

``python bench/cg_profile.py DUMPS [--apps saasfw-single saasfw-fleet] [--json PATH]``

DUMPS is the directory ``bench_instructions.py --keep DUMPS`` kept. Two views:

1. **machine instructions** (callgrind, from the two windows' dumps, so per request and
   with start-up subtracted like the headline figure): own instructions by shared object
   (the interpreter, libc, OpenSSL's libcrypto, C extensions), and the C functions with
   the most own instructions (the interpreter's eval loop, allocation, dictionaries,
   garbage collection...);
2. **Python bytecodes** (``_opcodes``, a separate uninstrumented run of the same app):
   bytecodes per request by Python package (own and inclusive) and the Python functions
   with the most inclusive bytecodes. Callgrind cannot name Python functions; this view
   can, but misses work done in C and in other threads (the span exporter's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _callgrind import read_dumps  # noqa: E402
from _cgparse import parse, short_object  # noqa: E402
from _services import Receiver, redis_server  # noqa: E402

MODES = ("reuse", "fresh")


def machine(directory: Path, mode: str, top: int = 12) -> dict[str, Any]:
    """Per request own instructions by object and top C functions: (n2 window - n1) / (n2 - n1)."""
    windows, files = read_dumps(directory)
    labels = {label.split()[2]: label for label in windows if label.startswith(f"window {mode} n")}
    n1, n2 = (int(labels[k].split()[3]) for k in ("n1", "n2"))
    obj1, self1, _ = parse(files[labels["n1"]])
    obj2, self2, _ = parse(files[labels["n2"]])
    span = float(n2 - n1)
    objects: Counter[str] = Counter()
    for name in obj2:
        objects[short_object(name)] += (obj2[name] - obj1.get(name, 0)) / span
    functions: Counter[str] = Counter()
    for (ob, fn), cost in self2.items():
        functions[f"{short_object(ob)}: {fn.split(chr(39))[0]}"] += (
            cost - self1.get((ob, fn), 0)
        ) / span
    total = (windows[labels["n2"]] - windows[labels["n1"]]) / span
    gc = sum(v for k, v in functions.items() if ": gc_" in k or "_PyObject_GC" in k)
    return {
        "per_request": total,
        "objects": [{"object": k, "instructions": v} for k, v in objects.most_common() if v > 0],
        "functions": [{"function": k, "instructions": v} for k, v in functions.most_common(top)],
        "gc_own": gc,
    }


def bytecodes(app: str, mode: str, n: int, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.json"
        cmd = [sys.executable, str(BENCH / "cg_worker.py"), "pyprofile", app]
        cmd += [f"--n2={n}", "--warmup=50", f"--modes={mode}", f"--out={out}"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{app}: pyprofile failed:\n{proc.stderr[-3000:]}")
        found: dict[str, Any] = json.loads(out.read_text())
        return found


def profile(dumps: Path, apps: list[str], n: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with Receiver() as receiver, redis_server() as (redis_url, _):
        env = {**os.environ, "BENCH_OTLP_URL": receiver.url, "BENCH_REDIS_URL": redis_url}
        for app in apps:
            for mode in MODES:
                print(f"profiling {app} ({mode} token)", flush=True)
                result[f"{app} {mode}"] = {
                    "app": app,
                    "mode": mode,
                    "machine": machine(dumps / app, mode),
                    "bytecodes": bytecodes(app, mode, n, env),
                }
    return result


def show(result: dict[str, Any]) -> None:
    for key, item in result.items():
        mach, byte = item["machine"], item["bytecodes"]
        total = mach["per_request"]
        print(f"\n== {key}: {total:,.0f} instructions/request")
        for row in mach["objects"][:8]:
            share = row["instructions"] / total
            print(f"  {row['object']:<40} {row['instructions']:>10,.0f} {share:6.1%}")
        print("  top C functions (own instructions):")
        for row in mach["functions"][:10]:
            print(f"    {row['function']:<60} {row['instructions']:>9,.0f}")
        ops = byte["opcodes_per_request"]
        print(f"  Python bytecodes per request: {ops:,.0f}; by package (own / inclusive):")
        for row in sorted(byte["packages"], key=lambda r: -r["self"])[:12]:
            print(
                f"    {row['package']:<28} {row['self']:>7,.0f} {row['self'] / ops:6.1%}  "
                f"{row['inclusive']:>7,.0f}"
            )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dumps", type=Path)
    parser.add_argument("--apps", nargs="*", default=["saasfw-single", "saasfw-fleet"])
    parser.add_argument("--requests", type=int, default=200, help="bytecode profile requests")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = profile(args.dumps, args.apps, args.requests)
    show(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
