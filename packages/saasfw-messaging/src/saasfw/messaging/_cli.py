"""The saasfw-messaging command line."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``saasfw-messaging``."""
    args = sys.argv[1:] if argv is None else argv
    if args in ([], ["--help"], ["-h"]):
        print("usage: saasfw-messaging --version")
        return 0
    if args == ["--version"]:
        from saasfw.messaging import __version__

        print(f"saasfw-messaging {__version__}")
        return 0
    print(f"saasfw-messaging: unknown arguments {args}", file=sys.stderr)
    return 2
