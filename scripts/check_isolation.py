"""Package isolation: every distribution builds, ships as a namespace piece, and stands alone.

1. ``uv build --all-packages --no-sources`` into a fresh ``dist/``: one wheel and one sdist
   per distribution.
2. No wheel contains ``saasfw/__init__.py`` (it would shadow every sibling of the PEP 420
   namespace) and each contains its ``py.typed``.
3. For each concern package: a new virtual environment with only that wheel, the saasfw-core
   wheel (built here, never taken from an index, so nobody else's upload under that name
   can win), its other dependencies from the index and its ``test`` dependency group; its
   public API imports and every name in ``__all__`` resolves; then that package's own tests
   run there, against the installed wheel.
4. The umbrella wheel installs together with the built wheels and ``import saasfw.app`` works.

Usage: ``python scripts/check_isolation.py [--only NAME ...] [--keep]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONCERNS = ("core", "config", "observability", "security", "db", "audit", "k8s", "messaging")
ALL = (*CONCERNS, "app")


def _dist_name(name: str) -> str:
    return "saasfw" if name == "app" else f"saasfw-{name}"


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


def _run(cmd: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None) -> None:
    shown = " ".join(str(c) if "\n" not in str(c) else "<script>" for c in cmd)
    print(f"  $ {shown}", flush=True)
    completed = subprocess.run(cmd, cwd=cwd, env=env, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"isolation: command failed with exit code {completed.returncode}")


def build(dist: Path) -> dict[str, Path]:
    shutil.rmtree(dist, ignore_errors=True)
    _run([*_uv(), "build", "--all-packages", "--no-sources", "--out-dir", str(dist), "-q"])
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if len(wheels) != len(ALL) or len(sdists) != len(ALL):
        raise SystemExit(
            f"isolation: expected {len(ALL)} wheels and {len(ALL)} sdists, got "
            f"{len(wheels)} wheels and {len(sdists)} sdists in {dist}"
        )
    by_name: dict[str, Path] = {}
    for name in ALL:
        prefix = _dist_name(name).replace("-", "_") + "-"
        matches = [w for w in wheels if w.name.startswith(prefix)]
        if len(matches) != 1:
            raise SystemExit(f"isolation: no single wheel for {_dist_name(name)} in {dist}")
        by_name[name] = matches[0]
    print(f"built {len(wheels)} wheels and {len(sdists)} sdists", flush=True)
    return by_name


def check_wheel_contents(wheels: dict[str, Path]) -> None:
    for name, wheel in wheels.items():
        with zipfile.ZipFile(wheel) as archive:
            files = set(archive.namelist())
        if "saasfw/__init__.py" in files:
            raise SystemExit(f"isolation: {wheel.name} contains saasfw/__init__.py (PEP 420)")
        if f"saasfw/{name}/py.typed" not in files:
            raise SystemExit(f"isolation: {wheel.name} lacks saasfw/{name}/py.typed")
        if f"saasfw/{name}/__init__.py" not in files:
            raise SystemExit(f"isolation: {wheel.name} lacks saasfw/{name}/__init__.py")
    print("wheel contents: no saasfw/__init__.py, every py.typed present", flush=True)


def _test_group(name: str) -> list[str]:
    data = tomllib.loads((ROOT / "packages" / _dist_name(name) / "pyproject.toml").read_text())
    group = data.get("dependency-groups", {}).get("test", [])
    return [req for req in group if isinstance(req, str)]


_API_PROBE = """
import importlib, sys
mod = importlib.import_module(sys.argv[1])
missing = [n for n in mod.__all__ if not hasattr(mod, n)]
assert not missing, f"{sys.argv[1]}.__all__ names missing attributes: {missing}"
assert "/site-packages/" in (mod.__file__ or ""), f"imported from the source tree: {mod.__file__}"
print(f"  {sys.argv[1]} {mod.__version__}: {len(mod.__all__)} public names import")
"""


def _venv(base: Path, label: str) -> Path:
    venv = base / label
    _run([*_uv(), "venv", "-q", "--python", sys.executable, str(venv)])
    return venv / "bin" / "python"


def check_concern(name: str, wheel: Path, core: Path, base: Path) -> None:
    print(f"[{name}] fresh environment with only {wheel.name}", flush=True)
    python = _venv(base, name)
    local = [str(wheel)] if name == "core" else [str(wheel), str(core)]
    _run([*_uv(), "pip", "install", "-q", "--python", str(python), *local, *_test_group(name)])
    _run([str(python), "-c", _API_PROBE, f"saasfw.{name}"])
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    tests = ROOT / "packages" / _dist_name(name) / "tests"
    _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)], env=env)


def check_umbrella(wheels: dict[str, Path], base: Path) -> None:
    print("[app] umbrella with the built wheels", flush=True)
    python = _venv(base, "app")
    _run([*_uv(), "pip", "install", "-q", "--python", str(python), *map(str, wheels.values())])
    _run([str(python), "-c", _API_PROBE, "saasfw.app"])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=CONCERNS, help="concern packages to test")
    parser.add_argument("--keep", action="store_true", help="keep the virtual environments")
    args = parser.parse_args(argv)
    started = time.monotonic()
    wheels = build(ROOT / "dist")
    check_wheel_contents(wheels)
    base = Path(tempfile.mkdtemp(prefix="saasfw-isolation-"))
    try:
        for name in args.only or CONCERNS:
            check_concern(name, wheels[name], wheels["core"], base)
        check_umbrella(wheels, base)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"isolation: all checks passed in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
