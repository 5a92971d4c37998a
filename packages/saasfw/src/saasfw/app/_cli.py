"""The ``saasfw`` command: one entry to every saasfw command line.

``saasfw config|db|audit|k8s|messaging ...`` runs that package's own CLI with the rest of
the arguments (its console script stays); ``saasfw new`` scaffolds a service; ``saasfw dev``
holds development helpers; ``saasfw --version`` shows every installed saasfw package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from saasfw.app._cli_dispatch import CONCERNS, dispatch, installed_versions
from saasfw.app._cli_new import add_new_parser, run_new
from saasfw.app._cli_token import add_token_parser, run_token

__all__ = ["main"]

_OWN = (
    ("new", "generate a new service that passes its own tests", "saasfw new billing"),
    (
        "dev",
        "development helpers: 'dev token' mints an access token the service accepts",
        "SAASFW_ENV=development saasfw dev token --sub alice --roles admin",
    ),
)


def _epilog() -> str:
    rows = [(c.command, c.summary, c.example) for c in CONCERNS] + list(_OWN)
    lines = ["commands, with an example each:"]
    for command, summary, example in rows:
        lines.append(f"  {command:<10} {summary}")
        lines.append(f"  {'':<10}   $ {example}")
    lines.append("")
    lines.append("'saasfw COMMAND --help' shows a command's own options; the package commands")
    lines.append("are the packages' own CLIs (saasfw db ... is saasfw-db ...).")
    return "\n".join(lines)


def _version_text() -> str:
    lines = []
    for name, found in installed_versions():
        lines.append(f"{name} {found if found is not None else '(not installed)'}")
    return "\n".join(lines)


class _VersionAction(argparse.Action):
    """``--version``: every saasfw distribution, computed only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show every saasfw package's version")

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(_version_text())
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saasfw",
        description="The saasfw service chassis.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for concern in CONCERNS:
        # Listed for --help only: main() hands these to the package CLI before parsing.
        commands.add_parser(concern.command, help=concern.summary, add_help=False)
    add_new_parser(commands)
    dev = commands.add_parser(
        "dev",
        help=_OWN[1][1],
        description="Development helpers (refused outside development and test).",
        epilog=f"example:\n  {_OWN[1][2]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    dev_commands = dev.add_subparsers(dest="dev_command", required=True, metavar="COMMAND")
    add_token_parser(dev_commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``saasfw``; returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments:
        for concern in CONCERNS:
            if arguments[0] == concern.command:
                return dispatch(concern, arguments[1:])
    try:
        args = _parser().parse_args(arguments)
    except SystemExit as exc:  # --help, --version, usage errors: argparse's own status
        return exc.code if isinstance(exc.code, int) else 0
    if args.command == "new":
        return run_new(args)
    return run_token(args)


if __name__ == "__main__":
    raise SystemExit(main())
