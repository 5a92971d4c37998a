"""Every Python sample in the README runs as a user runs it: saved to a file, run as a script."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SAMPLES = re.findall(r"```python\n# (\S+\.py)\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_samples() -> None:
    assert {name for name, _ in SAMPLES} >= {"problem_app.py", "outbox_and_jobs.py"}


@pytest.mark.parametrize(("name", "code"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_sample_runs_as_a_script(tmp_path: Path, name: str, code: str) -> None:
    pytest.importorskip("aiosqlite")
    script = tmp_path / name
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
