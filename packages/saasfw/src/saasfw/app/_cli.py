"""The ``saasfw`` command: ``saasfw new NAME`` scaffolds a service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from saasfw.app._scaffold import ScaffoldError, generate

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="saasfw", description="The saasfw service chassis.")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="generate a new service that passes its own tests")
    new.add_argument("name", help="service name, e.g. billing (a DNS label)")
    new.add_argument("--dir", default=".", help="parent directory (default: here)")
    new.add_argument("--image", default=None, help="container image for the manifests")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``saasfw``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        written = generate(args.name, Path(args.dir), image=args.image)
    except ScaffoldError as exc:
        print(f"saasfw new: {exc}", file=sys.stderr)
        return 2
    root = Path(args.dir) / args.name
    print(f"created {root} ({len(written)} files); next:")
    print(f"  cd {root} && uv run pytest        # its own tests")
    print(f"  uv run {args.name}                # serve on http://127.0.0.1:8000")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
