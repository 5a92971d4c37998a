"""The repository checks really catch what they exist to catch."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_repo_check_{name}", SCRIPTS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


rule = _load("check_dependency_rule")
changelogs = _load("check_changelogs")
shape = _load("check_shape")


def _module(root: Path, package: str, body: str) -> Path:
    path = root / "packages" / f"saasfw-{package}" / "src" / "saasfw" / package / "mod.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    "body",
    [
        "import saasfw.db\n",
        "from saasfw.db import Repository\n",
        "from saasfw import db\n",
        "def late():\n    import saasfw.db._engine\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from saasfw.db import x\n",
        "import importlib\nimportlib.import_module('saasfw.db')\n",
        "__import__('saasfw.db')\n",
    ],
)
def test_any_import_of_a_sibling_concern_is_a_breach(tmp_path: Path, body: str) -> None:
    _module(tmp_path, "config", body)
    breaches = rule.find_breaches(tmp_path)
    assert len(breaches) == 1
    assert "saasfw.config imports saasfw.db" in breaches[0]
    assert breaches[0].startswith("packages/saasfw-config/src/saasfw/config/mod.py:")


def test_own_package_stdlib_and_lookalikes_are_allowed(tmp_path: Path) -> None:
    _module(
        tmp_path,
        "config",
        "import saasfw.config._x\nimport json\nimport saasfw_dbx\nname = 'saasfw.db'\n",
    )
    assert rule.find_breaches(tmp_path) == []


def test_concerns_may_import_core_but_core_imports_no_concern(tmp_path: Path) -> None:
    _module(tmp_path, "db", "from saasfw.core import send_problem\n")
    assert rule.find_breaches(tmp_path) == []
    _module(tmp_path, "core", "from saasfw.security import Principal\n")
    breaches = rule.find_breaches(tmp_path)
    assert len(breaches) == 1
    assert "saasfw.core imports saasfw.security" in breaches[0]


def test_tests_of_a_concern_package_are_checked_too(tmp_path: Path) -> None:
    test = tmp_path / "packages" / "saasfw-audit" / "tests" / "test_x.py"
    test.parent.mkdir(parents=True)
    test.write_text("from saasfw.security import Principal\n")
    assert rule.main(["check", str(tmp_path)]) == 1


def _member(root: Path, version: str, changelog: str | None) -> None:
    member = root / "packages" / "saasfw-x"
    member.mkdir(parents=True)
    (member / "pyproject.toml").write_text(f'[project]\nname = "saasfw-x"\nversion = "{version}"\n')
    if changelog is not None:
        (member / "CHANGELOG.md").write_text(changelog)


def test_changelog_entry_for_current_version_passes(tmp_path: Path) -> None:
    _member(tmp_path, "0.2.0", "# Changelog\n\n## [0.2.0] - 2026-11-22\n\n- x\n")
    assert changelogs.problems(tmp_path) == []


@pytest.mark.parametrize(
    "text", [None, "# Changelog\n\n## [0.1.0] - 2026-11-01\n", "## [0.2.0-rc1] - 2026-11-01\n"]
)
def test_missing_changelog_entry_fails(tmp_path: Path, text: str | None) -> None:
    _member(tmp_path, "0.2.0", text)
    [problem] = changelogs.problems(tmp_path)
    assert "saasfw-x" in problem


def test_a_problem_writer_outside_core_is_a_breach(tmp_path: Path) -> None:
    _module(tmp_path, "db", 'MEDIA = "application/' + 'problem+json"\n')
    _module(tmp_path, "core", 'MEDIA = "application/' + 'problem+json"\n')
    found = rule.find_problem_writers(tmp_path)
    assert len(found) == 1
    assert found[0].startswith("packages/saasfw-db/src/saasfw/db/mod.py:1:")


def _shape_module(root: Path, package: str, name: str, body: str) -> None:
    path = root / "packages" / f"saasfw-{package}" / "src" / "saasfw" / package / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


def test_shape_finds_cycles_long_functions_and_missing_docstrings(tmp_path: Path) -> None:

    _shape_module(tmp_path, "db", "_a.py", '"""A."""\ndef f():\n    from saasfw.db._b import x\n')
    _shape_module(tmp_path, "db", "_b.py", '"""B."""\nfrom saasfw.db._a import f\nx = 1\n')
    _shape_module(
        tmp_path,
        "db",
        "_c.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from saasfw.db._a import f\n"
        "def long():\n" + "    pass\n" * 90,
    )
    found = shape.breaches(tmp_path)
    assert "cycle:saasfw.db._a,saasfw.db._b" in found
    assert "packages/saasfw-db/src/saasfw/db/_c.py::long" in found
    assert "packages/saasfw-db/src/saasfw/db/_c.py::<docstring>" in found
    assert not any("_c" in key for key in found if key.startswith("cycle:"))
    assert shape.main(["check", str(tmp_path)]) == 1
