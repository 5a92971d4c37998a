"""``saasfw new NAME``: where the new project's saasfw comes from, then the scaffold itself.

Until saasfw is on a public index, a project asking an index for ``saasfw`` would get
nothing, or worse, a stranger's upload under that name. So the project takes every saasfw
distribution from wheels copied into it (``--wheels DIR``); run from a saasfw checkout,
those wheels are built from the checkout. ``--index`` is the explicit opt-in to the
configured package index, for once saasfw is published there.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shlex
import shutil
import subprocess  # nosec B404
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any

from saasfw.app._scaffold import ScaffoldError, generate, new_project_root

__all__ = ["add_new_parser", "run_new"]

NEW_EXAMPLE = """\
examples:
  saasfw new billing                       # in a saasfw checkout: wheels built from it
  saasfw new billing --wheels ~/saasfw-wheels --dir ~/src
  saasfw new billing --index               # once saasfw is on your package index

The project: settings per environment, the app, a public and a protected route with tests,
an Alembic migration, a Dockerfile, a CI workflow (.github/workflows/ci.yml) and
Kubernetes manifests. Its own tests pass right away: cd billing && uv run pytest
"""


def add_new_parser(commands: Any) -> None:
    """Register ``saasfw new``."""
    new = commands.add_parser(
        "new",
        help="generate a new service that passes its own tests",
        description="Generate a new saasfw service.",
        epilog=NEW_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    new.add_argument("name", help="service name, e.g. billing (a DNS label)")
    new.add_argument("--dir", default=".", help="parent directory (default: here)")
    new.add_argument("--image", default=None, help="container image for the manifests")
    source = new.add_mutually_exclusive_group()
    source.add_argument(
        "--wheels",
        type=Path,
        default=None,
        metavar="DIR",
        help="a directory of saasfw wheels: copied into the project, which takes every "
        "saasfw distribution from them and never from an index (default, in a saasfw "
        "checkout: built from it)",
    )
    source.add_argument(
        "--index",
        action="store_true",
        help="take saasfw from the configured package index (only once it is published there)",
    )


def _checkout() -> Path | None:
    """The saasfw checkout this saasfw runs from (an editable install), if any."""
    try:
        text = distribution("saasfw").read_text("direct_url.json")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return None
    if not text:
        return None
    data = json.loads(text)
    url = data.get("url", "") if isinstance(data, dict) else ""
    if not url.startswith("file://") or not data.get("dir_info", {}).get("editable"):
        return None
    package = Path(url.removeprefix("file://"))
    for root in (package, *package.parents):
        pyproject = root / "pyproject.toml"
        if pyproject.is_file() and "[tool.uv.workspace]" in pyproject.read_text("utf-8"):
            return root
    return None


def _uv() -> list[str] | None:
    found = shutil.which("uv")
    if found:
        return [found]
    if importlib.util.find_spec("uv") is not None:
        return [sys.executable, "-m", "uv"]
    return None


def _build_wheels(checkout: Path, out: Path) -> None:
    uv = _uv()
    if uv is None:
        raise ScaffoldError(
            "building saasfw's wheels from the checkout needs uv (pip install uv); "
            "or pass --wheels DIR"
        )
    command = [*uv, "build", "--all-packages", "--no-sources", "--wheel", "-q"]
    completed = subprocess.run(  # noqa: S603  # nosec B603
        [*command, "--out-dir", str(out)],
        cwd=checkout,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise ScaffoldError(
            f"building saasfw's wheels in {checkout} failed: {completed.stderr.strip()[-500:]}"
        )


def _generate(args: argparse.Namespace) -> list[Path]:
    directory = Path(args.dir)
    new_project_root(args.name, directory)  # a bad name or a taken directory: before any build
    if args.index or args.wheels is not None:
        return generate(args.name, directory, image=args.image, wheels=args.wheels)
    checkout = _checkout()
    if checkout is None:
        raise ScaffoldError(
            "saasfw is not on a public index yet, so the project needs its wheels: pass "
            "--wheels DIR (built in a saasfw checkout with 'uv build --all-packages "
            "--no-sources --wheel --out-dir DIR'), or --index once saasfw is published"
        )
    with tempfile.TemporaryDirectory(prefix="saasfw-wheels-") as built:
        _build_wheels(checkout, Path(built))
        return generate(args.name, directory, image=args.image, wheels=Path(built))


def run_new(args: argparse.Namespace) -> int:
    """Generate the project; print what was made and the next step that works."""
    try:
        written = _generate(args)
    except ScaffoldError as exc:
        print(f"saasfw new: {exc}", file=sys.stderr)
        return 2
    root = (Path(args.dir) / args.name).resolve()
    print(f"created {root} ({len(written)} files); next:")
    print(f"  cd {shlex.quote(str(root))} && uv run pytest")
    print(f"then: uv run {args.name}   # serves on http://127.0.0.1:8000 (development)")
    return 0
