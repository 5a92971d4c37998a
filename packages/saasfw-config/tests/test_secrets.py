"""Secrets: masked everywhere, file secrets trimmed and permission-checked (acceptance 3)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, field_validator

from saasfw.config import (
    ConfigError,
    ProductionRule,
    ProductionRules,
    RuleContext,
    default_rules,
    effective_settings,
    enforce_production_rules,
    load_model,
    render_effective_settings,
    resolve_settings,
)
from saasfw.config._cli import main

WriteFile = Callable[[str, str], Path]

CANARY = "CANARY-7f3a9c2e-do-not-leak-4b1d8e6f-91"
URL_CANARY = "urlpw-CANARY-55aa"


class Vault(BaseModel):
    token: SecretStr = SecretStr("")
    api_key: SecretStr = SecretStr("")

    @field_validator("api_key")
    @classmethod
    def _reject_marker(cls, value: SecretStr) -> SecretStr:
        # A careless validator that echoes the value it rejects.
        if value.get_secret_value().endswith("-bad"):
            raise ValueError(f"api key {value.get_secret_value()} is revoked")
        return value


class Db(BaseModel):
    url: str = "sqlite:///orders.db"
    password: SecretStr = SecretStr("")


class Settings(BaseModel):
    debug: bool = False
    port: int = 8000
    vault: Vault = Vault()
    db: Db = Db()


MODEL_SOURCE = textwrap.dedent(
    """
    from pydantic import BaseModel, SecretStr


    class Vault(BaseModel):
        token: SecretStr = SecretStr("")


    class Db(BaseModel):
        url: str = "sqlite:///orders.db"
        password: SecretStr = SecretStr("")


    class Settings(BaseModel):
        debug: bool = False
        port: int = 8000
        vault: Vault = Vault()
        db: Db = Db()
    """
)


def _everything(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    if isinstance(exc, ConfigError):
        parts.extend(repr(p) for p in exc.problems)
        parts.append(exc.report())
    return "\n".join(parts)


def _assert_clean(*texts: str) -> None:
    for text in texts:
        assert CANARY not in text
        assert URL_CANARY not in text


@pytest.fixture
def everything_captured(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> Iterator[list[str]]:
    """Collects extra text; at teardown scans it with all captured output and logs."""
    caplog.set_level(logging.DEBUG)
    extra: list[str] = []
    yield extra
    captured = capsys.readouterr()
    _assert_clean(captured.out, captured.err, caplog.text, *extra)


def _sources(root: Path) -> dict[str, Any]:
    """Put the canary into a secret field through every kind of layer."""
    (root / "config").mkdir()
    (root / "config" / "base.yaml").write_text(f"vault:\n  token: {CANARY}\n")
    (root / ".env").write_text(f"SAASFW_DB__PASSWORD={CANARY}\n")
    secrets = root / "secrets"
    secrets.mkdir()
    (secrets / "SAASFW_VAULT__TOKEN").write_text(CANARY + "\n")
    (secrets / "SAASFW_VAULT__TOKEN").chmod(0o440)
    pointer = root / "api_key"
    pointer.write_text(CANARY + "-bad\n")
    return {
        "secrets_dir": secrets,
        "environ": {
            "SAASFW_VAULT__API_KEY_FILE": str(pointer),
            "SAASFW_DB__URL": f"postgresql://orders:{URL_CANARY}@db/orders",
            "SAASFW_PORT": "not-a-port",
        },
    }


def test_canary_never_leaks_from_a_failed_load(
    project: Path, everything_captured: list[str]
) -> None:
    kwargs = _sources(project)
    with pytest.raises(ConfigError) as caught:
        load_model(Settings, service="orders", env="development", **kwargs)
    text = _everything(caught.value)
    everything_captured.append(text)
    assert "port" in text
    assert "api_key" in text
    assert "**********" in text  # ...with the echoed secret masked
    logging.getLogger("test").error("load failed", exc_info=caught.value)


def test_canary_never_leaks_from_show_repr_logs_and_rules(
    project: Path, everything_captured: list[str]
) -> None:
    kwargs = _sources(project)
    kwargs["environ"] = {
        "SAASFW_DB__URL": f"postgresql://orders:{URL_CANARY}@db/orders",
        "SAASFW_DEBUG": "true",
    }
    loaded = resolve_settings(Settings, service="orders", env="development", **kwargs)
    assert loaded.settings.vault.token.get_secret_value() == CANARY
    everything_captured.extend(
        [
            repr(loaded),
            str(loaded.settings),
            repr(loaded.settings.vault),
            render_effective_settings(loaded, "yaml"),
            render_effective_settings(loaded, "json"),
            repr(effective_settings(loaded)),
        ]
    )

    def echoing_rule(settings: Any, context: RuleContext) -> list[str]:
        return [f"token {settings.vault.token.get_secret_value()} looks odd"]

    def exploding_rule(settings: Any, context: RuleContext) -> list[str]:
        raise RuntimeError(f"cannot parse {settings.vault.token.get_secret_value()}")

    rules = default_rules()
    rules.add(ProductionRule("test.echo", echoing_rule))
    rules.add(ProductionRule("test.explode", exploding_rule))
    # The URL is a plain str field: only repr/str/show mask its password, a dump does not.
    assert CANARY not in loaded.settings.model_dump_json()
    warnings = enforce_production_rules(loaded, rules)  # development: logged as warnings
    assert {w.rule for w in warnings} >= {"test.echo", "test.explode", "debug.off"}
    everything_captured.extend(str(w) for w in warnings)

    production = resolve_settings(Settings, service="orders", env="production", **kwargs)
    with pytest.raises(ConfigError) as caught:
        enforce_production_rules(production, rules)
    everything_captured.append(_everything(caught.value))
    assert "test.explode" in caught.value.report()


def test_canary_never_leaks_from_the_cli(project: Path, everything_captured: list[str]) -> None:
    (project / "canary_model.py").write_text(MODEL_SOURCE)
    (project / "config").mkdir()
    (project / "config" / "base.yaml").write_text(
        f"debug: true\nvault:\n  token: {CANARY}\ndb:\n  password: {CANARY}\n"
    )
    base = ["--service", "orders", "--model", "canary_model:Settings"]
    assert main(["show", *base, "--env", "development"]) == 0
    assert main(["show", *base, "--env", "development", "--format", "json"]) == 0
    assert main(["check", *base, "--env", "development"]) == 0
    assert main(["check", *base, "--env", "production"]) == 78
    (project / "config" / "development.yaml").write_text("port: nope\n")
    assert main(["show", *base, "--env", "development"]) == 1
    environ = {
        **os.environ,
        "SAASFW_ENV": "production",
        "SAASFW_DB__URL": f"postgresql://u:{URL_CANARY}@h/orders",
    }
    for command in ("show", "check"):
        result = subprocess.run(
            [sys.executable, "-m", "saasfw.config", command, *base],
            cwd=project,
            env=environ,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        everything_captured.extend([result.stdout, result.stderr])
        assert "Traceback" not in result.stderr


def test_secret_file_has_one_trailing_newline_trimmed(project: Path) -> None:
    secret = project / "token"
    secret.write_text("value-with-trailing-space \n\n")
    settings = load_model(
        Settings,
        service="orders",
        env="development",
        environ={"SAASFW_VAULT__TOKEN_FILE": str(secret)},
    )
    assert settings.vault.token.get_secret_value() == "value-with-trailing-space \n"
    secret.write_bytes(b"crlf\r\n")
    settings = load_model(
        Settings,
        service="orders",
        env="development",
        environ={"SAASFW_VAULT__TOKEN_FILE": str(secret)},
    )
    assert settings.vault.token.get_secret_value() == "crlf"


def test_production_refuses_secret_files_readable_by_others(project: Path) -> None:
    secrets = project / "secrets"
    secrets.mkdir()
    shared = secrets / "SAASFW_VAULT__TOKEN"
    shared.write_text("x" * 40)
    shared.chmod(0o644)
    pointer = project / "password"
    pointer.write_text("y" * 40)
    pointer.chmod(0o604)
    environ = {"SAASFW_DB__PASSWORD_FILE": str(pointer)}
    with pytest.raises(ConfigError) as caught:
        load_model(
            Settings, service="orders", env="production", secrets_dir=secrets, environ=environ
        )
    kinds = [p.kind for p in caught.value.problems]
    assert kinds == ["secret_permissions", "secret_permissions"]
    assert "mode 0644" in caught.value.report()
    # Development accepts them; production accepts owner/group-only files.
    load_model(Settings, service="orders", env="development", secrets_dir=secrets, environ=environ)
    shared.chmod(0o440)
    pointer.chmod(0o400)
    settings = load_model(
        Settings, service="orders", env="production", secrets_dir=secrets, environ=environ
    )
    assert settings.db.password.get_secret_value() == "y" * 40


def test_kubernetes_style_secret_mount_is_read_through_symlinks(project: Path) -> None:
    mount = project / "mount"
    data = mount / "..2026_11_22_00_00_00.000000001"
    data.mkdir(parents=True)
    (data / "SAASFW_VAULT__TOKEN").write_text("t" * 40)
    (mount / "..data").symlink_to(data.name)
    (mount / "SAASFW_VAULT__TOKEN").symlink_to("..data/SAASFW_VAULT__TOKEN")
    (data / "SAASFW_VAULT__TOKEN").chmod(0o440)
    loaded = resolve_settings(
        Settings, service="orders", env="production", secrets_dir=mount, environ={}
    )
    assert loaded.settings.vault.token.get_secret_value() == "t" * 40
    assert loaded.sources["vault.token"] == f"secrets dir {mount}/SAASFW_VAULT__TOKEN"


def test_field_literally_named_file_is_not_a_secret_pointer(project: Path) -> None:
    class Tls(BaseModel):
        cert_file: str = ""

    class WithTls(BaseModel):
        tls: Tls = Tls()

    settings = load_model(
        WithTls, service="orders", env="test", environ={"SAASFW_TLS__CERT_FILE": "/etc/cert.pem"}
    )
    assert settings.tls.cert_file == "/etc/cert.pem"


def test_missing_secret_file_is_reported_without_traceback(project: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_model(
            Settings,
            service="orders",
            env="test",
            environ={"SAASFW_VAULT__TOKEN_FILE": str(project / "nope")},
        )
    problem = caught.value.problems[0]
    assert "does not exist" in problem.message
    assert "SAASFW_VAULT__TOKEN_FILE" in problem.source


def test_custom_rules_registry_can_be_empty() -> None:
    assert len(ProductionRules()) == 0


def test_secret_items_of_lists_and_dicts_are_scrubbed_from_errors(project: Path) -> None:
    class Keys(BaseModel):
        keys: list[SecretStr] = []
        named: dict[str, SecretStr] = {}

        @field_validator("keys", "named")
        @classmethod
        def _echo(cls, value: Any) -> Any:
            if not value:
                return value
            raise ValueError(f"rejected {value!r} {[str(v) for v in value]} {CANARY}")

    for environ in ({"SAASFW_KEYS": f'["{CANARY}"]'}, {"SAASFW_NAMED": f'{{"a": "{CANARY}"}}'}):
        with pytest.raises(ConfigError) as caught:
            load_model(Keys, service="orders", env="test", environ=environ)
        _assert_clean(_everything(caught.value))
        assert len(caught.value.problems) == 1
