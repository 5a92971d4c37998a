"""``saasfw-config show`` and ``check``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import saasfw.config
from saasfw.config._cli import main

WriteFile = Callable[[str, str], Path]

MODEL = textwrap.dedent(
    """
    from pydantic import BaseModel, SecretStr

    class Db(BaseModel):
        url: str = "sqlite:///orders.db"
        password: SecretStr = SecretStr("")

    class Settings(BaseModel):
        debug: bool = False
        port: int = 8000
        db: Db = Db()
    """
)


@pytest.fixture
def cli_project(write: WriteFile, project: Path) -> Path:
    write("cli_model.py", MODEL)
    write("config/base.yaml", "port: 9000\n")
    write("config/orders/staging.yaml", "db:\n  url: postgresql://db/orders\n")
    write(".env", "SAASFW_DB__PASSWORD=Zq8-vN3r-Lw5t-Hx2k-Pm7c-Rb4y-Jd6f\n")
    return project


ARGS = ["--service", "orders", "--model", "cli_model:Settings"]


def test_show_yaml_prints_masked_settings_and_winning_sources(
    cli_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", *ARGS, "--env", "staging"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["service"] == "orders"
    assert shown["env"] == "staging"
    assert shown["settings"] == {
        "debug": False,
        "port": 9000,
        "db": {"url": "postgresql://db/orders", "password": "**********"},
    }
    assert shown["sources"] == {
        "debug": "default",
        "port": "config/base.yaml:1",
        "db.url": "config/orders/staging.yaml:2",
        "db.password": ".env:1 (SAASFW_DB__PASSWORD)",
    }


def test_show_json_and_environment_from_variable(
    cli_project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAASFW_ENV", "test")
    monkeypatch.setenv("SAASFW_PORT", "9100")
    assert main(["show", *ARGS, "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["env"] == "test"
    assert shown["settings"]["port"] == 9100
    assert shown["sources"]["port"] == "env SAASFW_PORT"


def test_check_passes_warns_or_refuses_by_environment(
    cli_project: Path, capsys: pytest.CaptureFixture[str], write: WriteFile
) -> None:
    assert main(["check", *ARGS, "--env", "staging"]) == 0
    assert "ok: settings for service 'orders' (staging) are valid with 0 warnings" in (
        capsys.readouterr().out
    )
    write("config/base.yaml", "port: 9000\ndebug: true\n")
    assert main(["check", *ARGS, "--env", "development"]) == 0
    captured = capsys.readouterr()
    assert "warning: unsafe setting" in captured.err
    assert "(a warning in development): [debug.off] debug: debug mode is on; set by " in (
        captured.err
    )
    assert "set by config/base.yaml:2" in captured.err
    assert "with 1 warning" in captured.out
    assert main(["check", *ARGS, "--env", "production"]) == 78
    err = capsys.readouterr().err
    assert "refusing to start" in err
    assert "debug (rule debug.off; set by config/base.yaml:2): debug mode is on" in err


def test_check_with_a_custom_rules_factory(
    cli_project: Path, capsys: pytest.CaptureFixture[str], write: WriteFile
) -> None:
    write(
        "cli_rules.py",
        """
        from saasfw.config import ProductionRule, ProductionRules

        def low_port(settings, context):
            return ["port"] if settings.port < 9500 else []

        def rules():
            return ProductionRules([ProductionRule("port.low", low_port)])
        """,
    )
    assert main(["check", *ARGS, "--env", "production", "--rules", "cli_rules:rules"]) == 78
    assert "[rule port.low]" in capsys.readouterr().err.replace(
        "(rule port.low)", "[rule port.low]"
    )


def test_installed_console_script(cli_project: Path) -> None:
    script = Path(sys.executable).parent / "saasfw-config"
    assert script.exists()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}
    result = subprocess.run(
        [str(script), "check", *ARGS, "--env", "staging"],
        cwd=cli_project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok:")
    version = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=True
    )
    assert version.stdout.strip() == f"saasfw-config {saasfw.config.__version__}"


def test_init_container_check_in_production(cli_project: Path) -> None:
    """As a Kubernetes init container: env vars, a 0440 secret mount, production, exit 0."""
    (cli_project / ".env").unlink()
    mount = cli_project / "secrets"
    mount.mkdir()
    secret = mount / "SAASFW_DB__PASSWORD"
    secret.write_text("Zq8-vN3r-Lw5t-Hx2k-Pm7c-Rb4y-Jd6f\n")
    secret.chmod(0o440)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}
    environ.update(
        SAASFW_ENV="production",
        SAASFW_SECRETS_DIR=str(mount),
        SAASFW_CONFIG_MODEL="cli_model:Settings",
        SAASFW_DB__URL="postgresql://orders:pw-in-url-1234@db/orders",
    )
    command = [sys.executable, "-m", "saasfw.config", "check", "--service", "orders"]
    run = subprocess.run(
        command,
        cwd=cli_project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert (
        run.stdout == "ok: settings for service 'orders' (production) are valid with 0 warnings\n"
    )
    secret.chmod(0o444)
    run = subprocess.run(
        command,
        cwd=cli_project,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1
    assert "readable by other users (mode 0444)" in run.stderr
