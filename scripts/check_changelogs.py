"""Fail when a package's CHANGELOG.md has no entry for the version in its pyproject.toml.

A release is a version bump plus its changelog entry plus the tag ``<dist>-v<version>``
(docs/releasing.md); this check keeps the first two together.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def problems(root: Path) -> list[str]:
    found: list[str] = []
    members = sorted(p.parent for p in (root / "packages").glob("*/pyproject.toml"))
    if not members:
        found.append(f"no packages under {root / 'packages'}")
    for member in members:
        project = tomllib.loads((member / "pyproject.toml").read_text("utf-8"))["project"]
        name, version = project["name"], project["version"]
        changelog = member / "CHANGELOG.md"
        if not changelog.is_file():
            found.append(f"{name}: {changelog.relative_to(root)} is missing")
            continue
        heading = re.compile(
            rf"^## \[{re.escape(version)}\]( - \d{{4}}-\d{{2}}-\d{{2}})?\s*$", re.M
        )
        if not heading.search(changelog.read_text("utf-8")):
            found.append(
                f"{name} {version}: {changelog.relative_to(root)} has no '## [{version}] - "
                f"YYYY-MM-DD' entry; add one before releasing"
            )
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    found = problems(root)
    for line in found:
        print(line, file=sys.stderr)
    if found:
        return 1
    print("changelogs: every package has an entry for its current version")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
