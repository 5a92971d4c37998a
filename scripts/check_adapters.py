"""Run every adapter's tests at the lowest versions the pyproject ranges allow.

An adapter is the one module of a package that touches another library's private names
(``packages/*/src/saasfw/*/_*_internals.py``); its tests are ``tests/test_<name>.py`` next
to it (``_otel_internals.py`` -> ``tests/test_otel_internals.py``). The normal test run
covers the newest, locked versions; this script covers the other end of the ranges:

1. find the adapters and their test files (an adapter without one fails the check);
2. make a throwaway virtual environment and install, with ``uv pip install --resolution
   lowest-direct``, saasfw-core and every package holding an adapter (from this source
   tree, never from an index), with the extras its adapters need, plus the libraries of
   those packages' ``test`` dependency groups (FastAPI, uvicorn, redis, ...): each at the
   lowest version its range allows;
3. upgrade only the test runner (pytest, pytest-asyncio, hypothesis) to its newest, since
   the repository's pytest configuration is written for it and it is not under test;
4. run just the adapter test files against that environment, from the repository root.

Usage: ``python scripts/check_adapters.py [--keep]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Extras a package's adapters need (the library they reach into, when optional).
EXTRAS = {"saasfw-security": "redis"}
# The test runner itself: installed at its newest after the lowest resolution.
RUNNER = ("pytest", "pytest-asyncio", "hypothesis")
# Printed so the log shows what "lowest" resolved to.
SHOWN = (
    "fastapi",
    "starlette",
    "opentelemetry-sdk",
    "opentelemetry-api",
    "limits",
    "redis",
    "structlog",
    "pydantic",
)


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def _run(cmd: list[str], *, env: dict[str, str] | None = None) -> None:
    print("  $ " + " ".join(cmd), flush=True)
    completed = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"adapters: command failed with exit code {completed.returncode}")


def adapters() -> dict[Path, list[Path]]:
    """Each package directory holding adapters, with the adapters' test files."""
    found: dict[Path, list[Path]] = {}
    for module in sorted(ROOT.glob("packages/*/src/saasfw/*/_*_internals.py")):
        package = module.parents[3]
        test = package / "tests" / f"test_{module.stem.lstrip('_')}.py"
        if not test.is_file():
            raise SystemExit(f"adapters: {module.relative_to(ROOT)} has no {test.name}")
        found.setdefault(package, []).append(test)
    if not found:
        raise SystemExit(
            "adapters: no adapter module found (packages/*/src/saasfw/*/_*_internals.py)"
        )
    return found


def _test_group(package: Path) -> list[str]:
    data = tomllib.loads((package / "pyproject.toml").read_text())
    group = data.get("dependency-groups", {}).get("test", [])
    return [req for req in group if isinstance(req, str)]


def _is_runner(requirement: str) -> bool:
    return re.split(r"[<>=!~\[;\s]", requirement, maxsplit=1)[0] in RUNNER


def install(python: Path, packages: list[Path]) -> None:
    requirements = [str(ROOT / "packages" / "saasfw-core")]
    libraries: list[str] = []
    for package in packages:
        extra = EXTRAS.get(package.name)
        requirements.append(f"{package}[{extra}]" if extra else str(package))
        libraries += _test_group(package)
    lowest = ["pip", "install", "-q", "--python", str(python), "--resolution", "lowest-direct"]
    _run([*_uv(), *lowest, *requirements, *sorted(set(libraries))])
    # The runner's lowest versions would be tested too; only its newest matches the
    # repository's pytest configuration (e.g. asyncio_default_test_loop_scope).
    runner = sorted({req for req in libraries if _is_runner(req)})
    _run([*_uv(), "pip", "install", "-q", "--python", str(python), "--upgrade", *runner])
    listing = subprocess.run(
        [*_uv(), "pip", "list", "--python", str(python), "--format", "freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    shown = [line for line in listing if line.split("==")[0].lower() in SHOWN]
    print("  lowest versions: " + ", ".join(shown), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the environment")
    args = parser.parse_args(argv)
    found = adapters()
    tests = [test for files in found.values() for test in files]
    print("adapter tests: " + ", ".join(str(t.relative_to(ROOT)) for t in tests), flush=True)
    base = Path(tempfile.mkdtemp(prefix="saasfw-adapters-"))
    try:
        venv = base / "lowest"
        _run([*_uv(), "venv", "-q", "--python", sys.executable, str(venv)])
        python = venv / "bin" / "python"
        install(python, list(found))
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        pytest = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        _run([*pytest, *(str(t.relative_to(ROOT)) for t in tests)], env=env)
    finally:
        if args.keep:
            print(f"adapters: environment kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print("adapters: every adapter's tests pass at the lowest allowed versions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
