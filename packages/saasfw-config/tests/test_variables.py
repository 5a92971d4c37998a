"""Unknown top-level ``SAASFW_*`` variables are caught (issue 18, part 2)."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, SecretStr

from saasfw.config import ConfigError, Problem, resolve_settings, unknown_variables
from saasfw.config._cli import main

WriteFile = Callable[[str, str], Path]


class RateLimit(BaseModel):
    default: str = "100/minute"
    storage_url: str = "memory://"


class Jwt(BaseModel):
    hmac_secret: SecretStr = SecretStr("")
    algorithm: str = "HS256"


class Security(BaseModel):
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    jwt: Jwt = Field(default_factory=Jwt)


class Logging(BaseModel):
    level: str = "INFO"


class Observability(BaseModel):
    logging: Logging = Field(default_factory=Logging)


class Settings(BaseModel):
    service: str = "svc"
    data_dir: str = "var"
    security: Security = Field(default_factory=Security)
    observability: Observability = Field(default_factory=Observability)
    clients: dict[str, RateLimit] = Field(default_factory=dict)


TYPO = "SAASFW_SECURTY__RATE_LIMIT"
HINT = f"{TYPO} is not a setting; did you mean SAASFW_SECURITY__RATE_LIMIT?"


def _load(env: str, environ: dict[str, str], **options: object) -> object:
    return resolve_settings(
        Settings,
        service="orders",
        env=env,
        config_dir=None,
        env_file=None,
        environ=environ,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("env", ["development", "test", "staging"])
def test_outside_production_an_unknown_variable_is_a_logged_warning(
    env: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="saasfw.config"):
        loaded = resolve_settings(
            Settings,
            service="orders",
            env=env,
            config_dir=None,
            env_file=None,
            environ={TYPO: '{"default": "1/second"}', "SAASFW_SERVICE": "orders"},
        )
    assert loaded.settings.service == "orders"
    assert loaded.warnings == (Problem("", f"env {TYPO}", HINT, "unknown_variable"),)
    assert [r.getMessage() for r in caplog.records] == [f"{HINT} (env {TYPO})"]
    assert "1/second" not in caplog.text  # names only, never values


def test_in_production_an_unknown_variable_refuses_to_load() -> None:
    environ = {TYPO: "x", "SAASFW_LOG_LEVEL": "debug", "SAASFW_DATA_DIR": "/data"}
    with pytest.raises(ConfigError) as caught:
        _load("production", environ)
    problems = {p.source: p for p in caught.value.problems}
    assert set(problems) == {f"env {TYPO}", "env SAASFW_LOG_LEVEL"}
    assert all(p.kind == "unknown_variable" for p in problems.values())
    assert problems[f"env {TYPO}"].message.startswith(HINT + " (production refuses")
    assert "SAASFW_LOG_LEVEL is not a setting" in problems["env SAASFW_LOG_LEVEL"].message
    assert "allow_unknown_variables" in caught.value.report()


def test_the_policy_can_be_loosened_or_tightened() -> None:
    loaded = _load("production", {TYPO: "x"}, allow_unknown_variables=True)
    assert [w.kind for w in loaded.warnings] == ["unknown_variable"]  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="is not a setting"):
        _load("development", {TYPO: "x"}, allow_unknown_variables=False)
    quiet = _load(
        "production",
        {TYPO: "x", "SAASFW_MYTOOL_A": "1"},
        foreign_variables=[TYPO, "saasfw_mytool_*"],
    )
    assert quiet.warnings == ()  # type: ignore[attr-defined]


def test_loader_and_tool_variables_are_never_flagged() -> None:
    environ = {
        "SAASFW_ENV": "production",
        "SAASFW_CONFIG_MODEL": "pkg:Settings",
        "SAASFW_APP": "",  # the image sets it (empty) unless it serves an ASGI app
        "SAASFW_SERVICE_NAME": "orders",
        "SAASFW_DB_MIGRATIONS": "migrations",
        "SAASFW_REQUIRE_SERVICES": "1",
        "SAASFW_TEST_POSTGRES_URL": "postgresql://postgres@127.0.0.1/test",
        "SAASFW_TEST_REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    assert _load("production", environ).warnings == ()  # type: ignore[attr-defined]


def test_dotenv_and_secret_files_are_checked_too(write: WriteFile, project: Path) -> None:
    write(".env", "SAASFW_SECURTY__JWT__HMAC_SECRET=dotenv-value\n")
    write("secrets/SAASFW_SECUTIRY__JWT__HMAC_SECRET", "file-value\n")
    (project / "secrets" / "SAASFW_SECUTIRY__JWT__HMAC_SECRET").chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        resolve_settings(
            Settings,
            service="orders",
            env="production",
            config_dir=None,
            env_file=project / ".env",
            secrets_dir=project / "secrets",
            environ={},
        )
    report = caught.value.report()
    assert ".env:1 (SAASFW_SECURTY__JWT__HMAC_SECRET)" in report
    assert "secrets dir " in report
    assert report.count("did you mean SAASFW_SECURITY__JWT__HMAC_SECRET?") == 2
    assert "dotenv-value" not in report
    assert "file-value" not in report


def test_suggestions_cover_file_pointers_and_far_misses() -> None:
    found = unknown_variables(
        Settings,
        [
            "SAASFW_SECURTY__JWT__HMAC_SECRET_FILE",
            "SAASFW_OBSERVABILTY__LOGGING__LEVL",
            "SAASFW_ZZZZZZ",
            "SAASFW_SECURITY__JWT__ALGORITM",
        ],
    )
    messages = [p.message for p in found]
    assert messages[0].endswith("did you mean SAASFW_SECURITY__JWT__HMAC_SECRET_FILE?")
    assert messages[1].endswith("did you mean SAASFW_OBSERVABILITY__LOGGING__LEVEL?")
    assert messages[2] == "SAASFW_ZZZZZZ is not a setting (no setting has a similar name)"
    assert messages[3] == (
        "unknown setting: SAASFW_SECURITY__JWT__ALGORITM does not name a field "
        "(did you mean SAASFW_SECURITY__JWT__ALGORITHM?)"
    )
    assert found[0].source == "SAASFW_SECURTY__JWT__HMAC_SECRET_FILE"


def test_unknown_variables_accepts_every_real_name() -> None:
    names = [
        "SAASFW_SERVICE",
        "saasfw_data_dir",
        "SAASFW_SECURITY",
        "SAASFW_SECURITY__JWT__HMAC_SECRET_FILE",
        "SAASFW_OBSERVABILITY__LOGGING__LEVEL",
        "SAASFW_CLIENTS__BILLING__STORAGE_URL",
        "SAASFW_ENV",
        "SAASFW_APP",
        "PATH",
    ]
    assert unknown_variables(Settings, names) == []
    assert [p.source for p in unknown_variables(Settings, ["SAASFW_TOOL"], allow=["X"])] == [
        "SAASFW_TOOL"
    ]
    assert unknown_variables(Settings, ["SAASFW_TOOL"], allow=["SAASFW_T*"]) == []


MODEL = textwrap.dedent(
    """
    from pydantic import BaseModel

    class Settings(BaseModel):
        port: int = 8000
    """
)


def test_cli_check_prints_the_warning_and_refuses_in_production(
    write: WriteFile, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write("cli_vars_model.py", MODEL)
    monkeypatch.setenv("SAASFW_PROT", "9000")
    args = ["--service", "orders", "--model", "cli_vars_model:Settings", "--env-file", "x.env"]
    write("x.env", "")
    assert main(["check", *args, "--env", "staging"]) == 0
    captured = capsys.readouterr()
    assert "warning: SAASFW_PROT is not a setting; did you mean SAASFW_PORT?" in captured.err
    assert "valid with 1 warning\n" in captured.out
    assert main(["check", *args, "--env", "production"]) == 1
    assert "SAASFW_PROT is not a setting" in capsys.readouterr().err
    allowed = ["--allow-variable", "SAASFW_PROT"]
    assert main(["check", *args, "--env", "production", *allowed]) == 0
    assert "valid with 0 warnings" in capsys.readouterr().out
