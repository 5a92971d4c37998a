"""The documentation site builds with --strict and every code sample in it runs.

- ``python`` blocks run (each page's blocks in one fresh interpreter, in order);
- ``sh`` blocks run with bash -e in a scratch directory (the release page's in a scratch
  clone of this repository whose ``origin`` is a throw-away bare repository, with
  ``uv publish`` turned into a dry run against an unreachable local index, so nothing
  ever leaves the machine), except the README's run command, which
  ``test_readme_run.py`` runs against a real server;
- ``text`` blocks are illustrations (diagrams) or install lines, whose requirements must
  name this workspace's distributions and extras.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


def blocks(page: str, language: str) -> list[str]:
    text = (DOCS / page).read_text("utf-8")
    return [body for lang, body in FENCE.findall(text) if lang == language]


def readme_run_command() -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_commands.py"), "run"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def sample_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def test_every_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text("utf-8")
    missing = [page for page in PAGES if page not in nav]
    assert not missing, missing


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "index.html").is_file()


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")])
def test_python_samples_run(page: str, tmp_path: Path) -> None:
    for number, code in enumerate(blocks(page, "python")):
        sample = tmp_path / f"sample_{number}.py"
        sample.write_text(code, "utf-8")
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import runpy; runpy.run_path({str(sample)!r}, run_name='docs')",
            ],
            cwd=tmp_path,
            env=sample_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{page} sample {number}:\n{result.stderr[-4000:]}"


# A shell function shadowing uv: `uv publish` checks the files and uploads nothing.
_NEVER_PUBLISH = """
uv() {
  if [ "$1" = publish ]; then
    shift
    command uv publish --dry-run --publish-url http://127.0.0.1:9/legacy/ --token dry-run "$@"
  else
    command uv "$@"
  fi
}
"""


def _scratch_clone(tmp_path: Path) -> Path:
    clone, bare = tmp_path / "clone", tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    subprocess.run(["git", "-C", str(clone), "remote", "set-url", "origin", str(bare)], check=True)
    return clone


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "sh")])
def test_shell_samples_run(page: str, tmp_path: Path) -> None:
    run_command = readme_run_command()
    script = []
    for body in blocks(page, "sh"):
        if body.strip() == run_command.split("; ", 1)[-1] or body.strip() == run_command:
            continue  # serves until stopped: test_readme_run.py runs it against a server
        script.append(body)
    if not script:
        return
    cwd = tmp_path
    if page == "releasing.md":
        cwd = _scratch_clone(tmp_path)
        script.insert(0, _NEVER_PUBLISH)
    env = sample_env()
    if page == "releasing.md":
        env.pop("VIRTUAL_ENV", None)
        env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "docs test"
        env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "docs@test.invalid"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{page}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def _distributions() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for pyproject in (ROOT / "packages").glob("*/pyproject.toml"):
        project = tomllib.loads(pyproject.read_text("utf-8"))["project"]
        found[project["name"]] = set(project.get("optional-dependencies", {}))
    return found


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "text")])
def test_install_lines_name_real_distributions(page: str) -> None:
    distributions = _distributions()
    for body in blocks(page, "text"):
        for line in body.splitlines():
            match = re.match(r"\s*pip install (\"[^\"]+\"|\S+)", line)
            if not match:
                continue
            requirement = Requirement(match.group(1).strip('"'))
            assert requirement.name in distributions, line
            assert requirement.extras <= distributions[requirement.name], line
            version = _distributions_versions()[requirement.name]
            assert requirement.specifier.contains(version), line


def _distributions_versions() -> dict[str, str]:
    return {
        tomllib.loads(p.read_text("utf-8"))["project"]["name"]: tomllib.loads(p.read_text("utf-8"))[
            "project"
        ]["version"]
        for p in (ROOT / "packages").glob("*/pyproject.toml")
    }
