"""Print one of the two commands of the README's Quickstart block (``run`` or ``test``).

CI runs the ``test`` command verbatim, and the integration suite starts the ``run``
command, so the README cannot drift from what is tested.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart_commands(text: str) -> list[str]:
    section = text.split("\n## Quickstart", 1)
    if len(section) != 2:
        raise SystemExit("README.md has no '## Quickstart' section")
    block = re.search(r"```(?:sh|shell|bash|console)\n(.*?)```", section[1], re.S)
    if block is None:
        raise SystemExit("README.md's Quickstart has no fenced shell block")
    lines = [ln.strip() for ln in block.group(1).splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(commands) != 2:
        raise SystemExit(f"README.md's Quickstart block must hold exactly 2 commands: {commands}")
    return commands


def main(argv: list[str]) -> int:
    which = argv[0] if argv else ""
    if which not in {"run", "test"}:
        raise SystemExit("usage: readme_commands.py run|test")
    run, test = quickstart_commands(README.read_text("utf-8"))
    print(run if which == "run" else test)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
