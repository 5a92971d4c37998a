"""``saasfw``: one command line over every package's own, with help, examples and versions."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from saasfw.app._cli import _OWN, main
from saasfw.app._cli_dispatch import CONCERNS, Concern, dispatch, install_hint

BIN = Path(sys.executable).parent
COMMANDS = ("config", "db", "audit", "k8s", "messaging", "new", "dev")


def _run(*args: str, script: str = "saasfw") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}
    return subprocess.run(
        [str(BIN / script), *args], env=env, capture_output=True, text=True, check=False
    )


def test_help_lists_every_command_with_a_description_and_an_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    listing = out.split("commands, with an example each:", 1)[1]
    for command in COMMANDS:
        lines = [line for line in listing.splitlines() if line.startswith(f"  {command} ")]
        assert lines, f"{command} missing from the listing"
        index = listing.splitlines().index(lines[0])
        example = listing.splitlines()[index + 1].strip()
        assert example.startswith("$ "), (command, example)
        assert f" {command}" in example, (command, example)


@pytest.mark.parametrize(
    ("command", "marker"), [("new", "saasfw new billing"), ("dev", "dev token")]
)
def test_own_commands_show_an_example(
    command: str, marker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example" in out
    assert marker in out


def test_version_names_every_installed_saasfw_package() -> None:
    result = _run("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"saasfw {version('saasfw')}"
    for name in ("saasfw-core", "saasfw-config", "saasfw-db", "saasfw-audit", "saasfw-k8s"):
        assert f"{name} {version(name)}" in lines


@pytest.mark.parametrize("concern", CONCERNS, ids=[c.command for c in CONCERNS])
def test_help_is_the_package_clis_own(concern: Concern) -> None:
    through = _run(concern.command, "--help")
    direct = _run("--help", script=concern.script)
    assert through.returncode == direct.returncode == 0
    assert through.stdout == direct.stdout


def test_the_rest_of_the_line_goes_through_untouched() -> None:
    through = _run("db", "upgrade", "--help")
    direct = _run("upgrade", "--help", script="saasfw-db")
    assert through.returncode == 0
    assert through.stdout == direct.stdout
    assert "usage: saasfw-db upgrade" in through.stdout


def test_a_package_command_runs_and_keeps_its_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "keygen", "hmac"]) == 0
    assert len(capsys.readouterr().out.strip()) >= 32
    # saasfw-config's usage error is its own status 2, with its own message.
    assert main(["config", "check"]) == 2
    assert "--service" in capsys.readouterr().err
    (tmp_path / "config" / "svc").mkdir(parents=True)
    (tmp_path / "config" / "svc" / "base.yaml").write_text("nope: 1\n", "utf-8")
    check = ["check", "--service", "svc", "--model", "saasfw.app:ServiceSettings"]
    check += ["--env", "development", "--config-dir", str(tmp_path / "config")]
    status = main(["config", *check])
    assert "unknown key 'nope'" in capsys.readouterr().err
    direct = _run(*check, script="saasfw-config")
    assert status == direct.returncode != 0  # invalid settings: saasfw-config's own status


def test_a_missing_package_names_what_to_install(capsys: pytest.CaptureFixture[str]) -> None:
    absent = Concern("search", "saasfw-search-absent", "saasfw-search-absent", "s", "e")
    assert dispatch(absent, ["--help"]) == 2
    err = capsys.readouterr().err
    assert "saasfw search: needs saasfw-search-absent, which is not installed" in err
    assert 'pip install "saasfw-search-absent"' in err


def test_install_hints_follow_the_umbrellas_requirements() -> None:
    assert install_hint("saasfw-db") == (
        'pip install "saasfw-db<0.4,>=0.3" (or reinstall saasfw, which depends on it)'
    )


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.slow  # builds every wheel of the checkout, as 'saasfw new' does there
def test_the_readme_sample_runs_as_written(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    section = readme.split("## The `saasfw` command", 1)[1]
    sample = section.split("```sh\n", 1)[1].split("```", 1)[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", sample],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"saasfw {version('saasfw')}" in result.stdout
    assert "usage: saasfw-db upgrade" in result.stdout
    token = next(line for line in result.stdout.splitlines() if line.startswith("eyJ"))
    assert token.count(".") == 2
    assert "refused with exit status 78" in result.stdout
    assert (tmp_path / "billing" / "wheels").is_dir()


def _examples() -> list[list[str]]:
    found = [shlex.split(c.example) for c in CONCERNS]
    found += [shlex.split(example) for _, _, example in _OWN]
    return [[w for w in words if "=" not in w or w.startswith("-")] for words in found]


@pytest.mark.parametrize("words", _examples(), ids=lambda words: words[1])
def test_every_example_in_the_help_parses(
    words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert words[0] == "saasfw"
    args = words[1:] if words[-1] in ("--help", "--version") else [*words[1:], "--help"]
    assert main(args) == 0, capsys.readouterr().err
    assert capsys.readouterr().out
