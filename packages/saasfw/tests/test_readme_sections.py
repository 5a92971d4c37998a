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


JOBS = README.read_text("utf-8").split("## Scheduled jobs\n", 1)[1].split("\n## ", 1)[0]
JOB_SNIPPETS = re.findall(r"^```python\n(.*?)^```", JOBS, re.S | re.M)


def test_the_section_has_a_snippet() -> None:
    assert SNIPPETS
    assert len(JOB_SNIPPETS) == 1


def test_the_jobs_snippet_makes_a_job_that_runs(tmp_path: Path) -> None:
    script = tmp_path / "jobs_snippet.py"
    script.write_text(
        JOB_SNIPPETS[0]
        + "\nimport asyncio\n"
        + "print(CART_PURGE.name, CART_PURGE.every,"
        + " asyncio.run(CART_PURGE.run(JobContext('x', 1, 0.0, 'me'))))\n",
        "utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "purge-expired-carts 3600 0"


@pytest.mark.parametrize("code", SNIPPETS)
def test_snippet_runs_as_a_script(tmp_path: Path, code: str) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(code + "\nprint(rename.__name__)\n", "utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "rename"
