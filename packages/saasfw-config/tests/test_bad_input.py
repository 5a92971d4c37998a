"""Acceptance 6: bad input gives a clear error, never a traceback (loader and CLI)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from saasfw.config import ConfigError, load_model
from saasfw.config._cli import main

WriteFile = Callable[[str, str], Path]


class Section(BaseModel):
    value: int = 0
    token: SecretStr = SecretStr("")


class Settings(BaseModel):
    name: str = "x"
    section: Section = Section()
    tree: dict[str, object] = {}


MODEL = textwrap.dedent(
    """
    from pydantic import BaseModel, SecretStr

    class Section(BaseModel):
        value: int = 0
        token: SecretStr = SecretStr("")

    class Settings(BaseModel):
        name: str = "x"
        section: Section = Section()
    """
)

RULES_BASE = ["check", "--service", "orders", "--model", "bad_input_model:Settings", "--rules"]
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)


def _make(path: Path, kind: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    elif kind == "latin1":
        path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "blank":
        path.write_text("  \n\n\t\n")
    elif kind == "comments":
        path.write_text("# nothing here yet\n")
    elif kind == "huge":
        path.write_text("name: " + "x" * (2 * 1024 * 1024) + "\n")
    elif kind == "sparse":
        with path.open("wb") as handle:
            handle.truncate(8 * 1024**3)
    elif kind == "syntax":
        path.write_text("name: ok\nsection:\n  value: [1, 2\n")
    elif kind == "list":
        path.write_text("- name\n- value\n")
    elif kind == "documents":
        path.write_text("name: a\n---\nname: b\n")
    elif kind == "deep":
        path.write_text("tree: " + "[" * 200_000 + "]" * 200_000 + "\n")
    elif kind == "bomb":
        path.write_text(BOMB)
    elif kind == "dangling":
        path.symlink_to(path.parent / "does-not-exist.yaml")
    else:  # pragma: no cover - test table typo
        raise AssertionError(kind)


CASES = {
    "directory": "is a directory",
    "fifo": "is not a regular file",
    "binary": "contains binary data",
    "latin1": "is not valid UTF-8",
    "empty": "file is empty",
    "blank": "file is empty",
    "comments": "holds no settings",
    "huge": "larger than the 1048576-byte limit",
    "sparse": "larger than the 1048576-byte limit",
    "syntax": "YAML syntax error",
    "list": "top level must be a mapping",
    "documents": "expected one YAML document, found 2",
    "deep": "nested deeper than 64 levels",
    "bomb": "more than 100000 YAML nodes",
    "dangling": "does not exist",
}


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_yaml_layer_is_a_clear_error(project: Path, kind: str) -> None:
    _make(project / "config" / "base.yaml", kind)
    with pytest.raises(ConfigError) as caught:
        load_model(Settings, service="orders", env="test", environ={})
    assert CASES[kind] in caught.value.report()
    assert caught.value.problems[0].source.startswith("config/base.yaml")


@pytest.mark.parametrize("kind", ["binary", "huge", "sparse", "directory", "fifo", "latin1"])
def test_bad_dotenv_and_secret_files_are_clear_errors(project: Path, kind: str) -> None:
    _make(project / "bad.env", kind)
    _make(project / "secret", kind)
    with pytest.raises(ConfigError) as caught:
        load_model(
            Settings,
            service="orders",
            env="test",
            env_file="bad.env",
            environ={"SAASFW_SECTION__TOKEN_FILE": str(project / "secret")},
        )
    sources = [p.source for p in caught.value.problems]
    assert sources[0] == "bad.env"
    assert "SAASFW_SECTION__TOKEN_FILE" in sources[1]


def test_unparsable_dotenv_line_is_located(write: WriteFile) -> None:
    write(".env", "SAASFW_NAME=ok\nthis is not an assignment\n")
    with pytest.raises(ConfigError) as caught:
        load_model(Settings, service="orders", env="test", environ={})
    assert caught.value.problems[0].source == ".env:2"


def test_missing_explicit_directories_are_clear_errors(project: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_model(
            Settings,
            service="orders",
            env="test",
            config_dir="nope",
            secrets_dir="missing-secrets",
            environ={},
        )
    report = caught.value.report()
    assert "configuration directory does not exist" in report
    assert "secrets directory does not exist" in report


@pytest.mark.parametrize("kind", list(CASES))
def test_cli_reports_bad_files_without_traceback(
    project: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "bad_input_model.py").write_text(MODEL)
    _make(project / "config" / "orders" / "test.yaml", kind)
    code = main(
        ["check", "--service", "orders", "--model", "bad_input_model:Settings", "--env", "test"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert CASES[kind] in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["show", "--service", "orders"], "name the settings model with --model"),
        (["show", "--service", "orders", "--model", "nomodule_xyz:S"], "cannot import module"),
        (["show", "--service", "orders", "--model", "bad_input_model"], "must look like"),
        (["show", "--service", "orders", "--model", "bad_input_model:Nope"], "has no attribute"),
        (
            ["show", "--service", "orders", "--model", "bad_input_model:MODEL_NAME"],
            "not a pydantic",
        ),
        (["show", "--service", "orders", "--model", "broken_model:S"], "ZeroDivisionError"),
        (
            ["check", "--service", "Bad/Name", "--model", "bad_input_model:Settings"],
            "invalid service",
        ),
        (
            [*RULES_BASE, "broken_rules:make"],
            "--rules 'broken_rules:make' failed (RuntimeError: no rules)",
        ),
        ([*RULES_BASE, "bad_input_model:MODEL_NAME"], "is not a ProductionRules"),
    ],
)
def test_cli_usage_errors_are_one_line(
    project: Path, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "bad_input_model.py").write_text(MODEL + "\nMODEL_NAME = 'Settings'\n")
    (project / "broken_model.py").write_text("1 / 0\n")
    (project / "broken_rules.py").write_text("def make():\n    raise RuntimeError('no rules')\n")
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert message in err
    assert "Traceback" not in err


def _unprivileged() -> list[str]:
    """A command prefix under which file permissions apply, even when tests run as root."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


def test_unreadable_files_through_the_installed_cli(project: Path) -> None:
    (project / "bad_input_model.py").write_text(MODEL)
    config = project / "config"
    config.mkdir()
    unreadable = config / "base.yaml"
    unreadable.write_text("name: fine\n")
    unreadable.chmod(0o000)
    (project / ".env").write_text("SAASFW_NAME=x\n")
    (project / ".env").chmod(0o000)
    secret = project / "token"
    secret.write_text("t" * 40)
    secret.chmod(0o000)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}
    environ["SAASFW_SECTION__TOKEN_FILE"] = str(secret)
    result = subprocess.run(
        [
            *_unprivileged(),
            sys.executable,
            "-m",
            "saasfw.config",
            "check",
            "--service",
            "orders",
            "--model",
            "bad_input_model:Settings",
            "--env",
            "test",
        ],
        cwd=project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("cannot be read: permission denied") == 3, result.stderr


def test_a_bad_file_does_not_hide_the_other_layers_errors(project: Path) -> None:
    _make(project / "config" / "base.yaml", "binary")
    (project / "config" / "test.yaml").write_text("<<: 1\nsection:\n  value: nope\n")
    with pytest.raises(ConfigError) as caught:
        load_model(
            Settings,
            service="orders",
            env="test",
            environ={"SAASFW_NAME": "ok", "SAASFW_TREE": "x"},
        )
    assert [(p.path, p.source) for p in caught.value.problems] == [
        ("", "config/base.yaml"),
        ("", "config/test.yaml:1"),
        ("section.value", "config/test.yaml:3"),
        ("tree", "env SAASFW_TREE"),
    ]
