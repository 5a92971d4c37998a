"""The mkdocs hook that fills a page's generated sections from the code at docs build.

A page marks a section as ``<!-- generated:NAME -->`` ... ``<!-- /generated -->``; at build
the text between the markers is replaced by what ``scripts/docs_generate.py`` says now (run
once per build, in a process of its own). An unknown section name fails the build, so a
page can never show a section nobody generates.

The committed page holds the same text, so it reads right on a forge too;
``tests-integration/test_architecture_doc.py`` fails when it has gone stale, and
``python scripts/docs_hooks.py docs/architecture.md`` rewrites it in place.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "scripts" / "docs_generate.py"
SECTION = re.compile(r"(<!-- generated:([\w.-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)

_cache: dict[str, str] | None = None


def generate() -> dict[str, str]:
    """Every generated section by name, asked of the code in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("SAASFW_")}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "sections.json"
        result = subprocess.run(
            [sys.executable, str(GENERATOR), "--out", str(out)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{GENERATOR.name} failed:\n{result.stderr[-4000:]}")
        sections: dict[str, str] = json.loads(out.read_text("utf-8"))
    return sections


def fill(markdown: str, sections: dict[str, str]) -> str:
    """``markdown`` with every marked section replaced by its generated text."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in sections:
            raise KeyError(f"no generator for section {name!r} (known: {sorted(sections)})")
        return f"{match.group(1)}{sections[name].rstrip()}\n{match.group(4)}"

    return SECTION.sub(replace, markdown)


def on_pre_build(config: Any, **kwargs: Any) -> None:
    """Forget the previous build's sections (``mkdocs serve`` rebuilds in one process)."""
    global _cache
    _cache = None


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any, **kwargs: Any) -> str:
    """Fill the page's generated sections (pages without markers are left as they are)."""
    global _cache
    if not SECTION.search(markdown):
        return markdown
    if _cache is None:
        _cache = generate()
    return fill(markdown, _cache)


def main(argv: list[str]) -> int:
    """Rewrite the pages named in ``argv`` with their sections as the code says now."""
    sections = generate()
    for name in argv[1:]:
        path = Path(name)
        text = path.read_text("utf-8")
        updated = fill(text, sections)
        if updated != text:
            path.write_text(updated, "utf-8")
            print(f"updated {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
