"""The README's SQL subject key store sample runs as written."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _sample() -> str:
    text = README.read_text("utf-8")
    section = text[text.index("### Across a fleet: the SQL subject key store") :]
    match = re.search(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert match is not None
    return match.group(1)


def test_the_readme_subject_key_sample_runs_as_written() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_sample(), str(README), "exec"), {"__name__": "readme_sample"})  # noqa: S102
    assert out.getvalue() == "erased on every instance\n"
