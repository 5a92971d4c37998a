"""The README's snippets outside "A service" (run elsewhere, end to end) run as scripts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = README.read_text("utf-8").split("## Transactional audit and events\n", 1)[1]
SNIPPETS = re.findall(r"^```python\n(.*?)^```", SECTION.split("\n## ", 1)[0], re.S | re.M)


def test_the_section_has_a_snippet() -> None:
    assert SNIPPETS


@pytest.mark.parametrize("code", SNIPPETS)
def test_snippet_runs_as_a_script(tmp_path: Path, code: str) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code + "\nprint(rename.__name__)\n", "utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "rename"
