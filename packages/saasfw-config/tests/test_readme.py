"""The README's minimal example runs as written."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_minimal_example_runs(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("SAASFW_") or n == "DB_HOST"]:
        monkeypatch.delenv(name)
    (project / "config").mkdir()
    (project / "config" / "base.yaml").write_text(_blocks("yaml")[0])
    namespace: dict[str, object] = {"__name__": "readme_example"}
    first, second = _blocks("python")[:2]
    exec(compile(first, "README.md", "exec", dont_inherit=True), namespace)  # noqa: S102 - our own README
    assert capsys.readouterr().out == "8080\npostgresql://localhost:5432/orders\n"
    exec(compile(second, "README.md", "exec", dont_inherit=True), namespace)  # noqa: S102
    loaded = namespace["loaded"]
    assert loaded.sources["server.port"] == "config/base.yaml:2"  # type: ignore[attr-defined]
    assert loaded.sources["server.host"] == "default"  # type: ignore[attr-defined]
