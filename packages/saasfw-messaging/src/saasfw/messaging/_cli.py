"""The saasfw-messaging command line: export the AsyncAPI document, handle dead letters.

``saasfw-messaging asyncapi --app module:attr`` prints the document ``attr`` is (a dict)
or returns (a zero-argument callable, e.g. a function calling ``asyncapi_document``).
``saasfw-messaging dead-letters list|inspect|replay`` works on the service's database.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from saasfw.messaging._cli_dead_letters import (
    EXIT_OK,
    EXIT_USAGE,
    add_dead_letter_commands,
    run_dead_letters,
)

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saasfw-messaging", description="saasfw-messaging operations"
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    export = commands.add_parser("asyncapi", help="print the service's AsyncAPI document")
    export.add_argument(
        "--app", required=True, help="module:attr, a document dict or a callable returning one"
    )
    export.add_argument("--output", "-o", type=Path, help="write to this file, not stdout")
    add_dead_letter_commands(commands)
    return parser


def _export(target: str, output: Path | None) -> int:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        print(f"saasfw-messaging: --app must be module:attr, got {target!r}", file=sys.stderr)
        return EXIT_USAGE
    sys.path.insert(0, str(Path.cwd()))
    try:
        value: object = importlib.import_module(module_name)
        for part in attr.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        print(f"saasfw-messaging: cannot load {target!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    document = value() if callable(value) else value
    if not isinstance(document, Mapping) or not str(document.get("asyncapi", "")).startswith("3"):
        print(
            f"saasfw-messaging: {target!r} is not an AsyncAPI 3 document (a dict from "
            "asyncapi_document) nor a callable returning one",
            file=sys.stderr,
        )
        return EXIT_USAGE
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``saasfw-messaging``; returns the exit code."""
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    if args.version:
        from saasfw.messaging import __version__

        print(f"saasfw-messaging {__version__}")
        return EXIT_OK
    if args.command == "asyncapi":
        return _export(args.app, args.output)
    if args.command == "dead-letters":
        return run_dead_letters(args)
    parser.print_help()
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
