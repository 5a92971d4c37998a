"""Production safety rules: registry, built-in checks, enforcement (acceptance 4)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretBytes, SecretStr

from saasfw.config import (
    ConfigError,
    LoadedSettings,
    ProductionRule,
    ProductionRules,
    RuleContext,
    UnsafeSettingsError,
    Violation,
    debug_rule,
    default_rules,
    enforce_production_rules,
    exit_if_unsafe,
    resolve_settings,
    secret_weakness,
    weak_secrets_rule,
)

STRONG = "k" * 20 + "9f8e7d6c5b4a3210"


class Security(BaseModel):
    jwt_secret: SecretStr = SecretStr("")
    cors_origins: list[str] = []
    cors_credentials: bool = False


class Api(BaseModel):
    debug: bool = False


class Settings(BaseModel):
    debug: bool = False
    security: Security = Security()
    api: Api = Api()
    keys: list[SecretStr] = []
    raw: SecretBytes = SecretBytes(STRONG.encode())


def _loaded(settings: BaseModel, env: str = "production") -> LoadedSettings[Any]:
    return LoadedSettings(settings=settings, service="orders", env=env, config_dir=None, sources={})


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("changeme", "placeholder"),
        ("Change-Me!", "placeholder"),
        ("please-changeme-in-production-before-deploying", "placeholder"),
        ("SECRET", "placeholder"),
        ("x" * 40, "placeholder"),
        ("s3cr3t-but-short", "shorter than 32"),
        (STRONG, None),
    ],
)
def test_secret_weakness(secret: str, reason: str | None) -> None:
    found = secret_weakness(secret)
    if reason is None:
        assert found is None
    else:
        assert found is not None
        assert reason in found


def test_a_long_secret_equal_to_the_model_default_is_weak() -> None:
    default = SecretStr("a-very-long-default-secret-shipped-in-code-1234")
    assert "default" in (secret_weakness(default.get_secret_value(), default) or "")


def test_weak_secrets_rule_walks_sections_lists_and_bytes() -> None:
    settings = Settings(
        security=Security(jwt_secret=SecretStr("short")),
        keys=[SecretStr(STRONG), SecretStr("changeme")],
        raw=SecretBytes(b""),
    )
    found = list(weak_secrets_rule().check(settings, RuleContext("orders", "production")))
    assert {(v.path, v.message.split(" ")[2]) for v in found if isinstance(v, Violation)} == {
        ("security.jwt_secret", "shorter"),
        ("keys[1]", "a"),
        ("raw", "empty"),
    }


def test_debug_rule_finds_debug_at_any_depth() -> None:
    settings = Settings(debug=True, api=Api(debug=True))
    found = list(debug_rule().check(settings, RuleContext("orders", "production")))
    assert [v.path for v in found if isinstance(v, Violation)] == ["debug", "api.debug"]


def test_registry_is_open_and_names_are_unique() -> None:
    rules = ProductionRules()
    rules.add(ProductionRule("x", lambda settings, context: []))
    with pytest.raises(ValueError, match="already registered"):
        rules.add(ProductionRule("x", lambda settings, context: []))
    with pytest.raises(ValueError, match="unknown environments"):
        rules.add(ProductionRule("y", lambda settings, context: [], frozenset({"prod"})))
    assert "x" in rules
    rules.remove("x")
    assert len(rules) == 0
    assert [rule.name for rule in default_rules()] == [
        "secrets.strength",
        "debug.off",
        "db.isolation",
    ]


def cors_violations(security: Security) -> list[str]:
    """What another package would expose: a plain callable over its own section."""
    if "*" in security.cors_origins and security.cors_credentials:
        return ["CORS allows any origin together with credentials"]
    return []


def test_section_checks_wire_plain_package_callables() -> None:
    rules = ProductionRules()
    rules.add_section_check("security.cors", "security", cors_violations)
    rules.add_section_check("absent.section", "nothing.here", cors_violations)
    unsafe = Settings(security=Security(cors_origins=["*"], cors_credentials=True))
    with pytest.raises(UnsafeSettingsError) as caught:
        enforce_production_rules(_loaded(unsafe), rules)
    assert caught.value.problems[0].path == "security"
    assert "credentials" in caught.value.problems[0].message
    assert enforce_production_rules(_loaded(Settings()), rules) == []


def test_one_report_lists_every_violation_and_fatal_depends_on_environment(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rules = default_rules()
    rules.add(
        ProductionRule(
            "staging.only",
            lambda settings, context: ["fatal from staging on"],
            frozenset({"staging", "production"}),
        )
    )
    # debug on, plus the empty jwt_secret; raw differs from its (long) model default
    settings = Settings(debug=True, raw=SecretBytes(b"another-" + STRONG.encode()))
    with pytest.raises(UnsafeSettingsError) as caught:
        enforce_production_rules(_loaded(settings, "production"), rules)
    assert [p.source for p in caught.value.problems] == [
        "rule secrets.strength",
        "rule debug.off",
        "rule staging.only",
    ]
    with pytest.raises(UnsafeSettingsError):
        enforce_production_rules(_loaded(settings, "staging"), rules)
    caplog.set_level(logging.WARNING, logger="saasfw.config")
    warnings = enforce_production_rules(_loaded(settings, "development"), rules)
    assert len(warnings) == 3
    assert not any(w.fatal for w in warnings)
    assert caplog.text.count("unsafe setting") == 3


def test_a_rule_that_raises_counts_as_violated() -> None:
    def broken(settings: Any, context: RuleContext) -> list[str]:
        raise KeyError("boom")

    rules = ProductionRules([ProductionRule("broken", broken)])
    with pytest.raises(UnsafeSettingsError) as caught:
        enforce_production_rules(_loaded(Settings()), rules)
    assert "check itself failed (KeyError" in caught.value.report()


def test_exit_if_unsafe_prints_report_and_exits_78(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        exit_if_unsafe(_loaded(Settings(debug=True)))
    assert caught.value.code == 78
    assert "debug mode is on" in capsys.readouterr().err


SERVER = textwrap.dedent(
    """
    import logging
    import socket
    import sys

    def report_binds(event, args):
        if event == "socket.bind":
            print(f"BIND {args[1]!r}", file=sys.stderr, flush=True)

    sys.addaudithook(report_binds)  # any bind anywhere in this process is reported

    from pydantic import BaseModel, SecretStr
    from saasfw.config import exit_if_unsafe, resolve_settings

    class Security(BaseModel):
        jwt_secret: SecretStr = SecretStr("")

    class Settings(BaseModel):
        security: Security = Security()

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    loaded = resolve_settings(Settings, service="orders")
    exit_if_unsafe(loaded)
    server = socket.socket()
    server.bind(("127.0.0.1", int(sys.argv[1])))
    server.listen()
    print("LISTENING", flush=True)
    server.close()
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize(
    "secret_yaml",
    ["jwt_secret: changeme", "jwt_secret: ''", "jwt_secret: short-but-real-Xy7", "{}"],
    ids=["placeholder", "empty", "short", "unset"],
)
def test_acceptance_4_production_exits_before_binding_development_warns(
    tmp_path: Path, secret_yaml: str
) -> None:
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "base.yaml").write_text(f"security: {{{secret_yaml.strip('{}')}}}\n")
    port = _free_port()

    def start(env: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}
        environ["SAASFW_ENV"] = env
        return subprocess.run(
            [sys.executable, "server.py", str(port)],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    production = start("production")
    assert production.returncode == 78, production.stderr
    assert "BIND" not in production.stderr
    assert "LISTENING" not in production.stdout
    assert "security.jwt_secret" in production.stderr
    assert "refusing to start" in production.stderr
    assert "Traceback" not in production.stderr

    development = start("development")
    assert development.returncode == 0, development.stderr
    assert f"BIND ('127.0.0.1', {port})" in development.stderr
    assert "LISTENING" in development.stdout
    assert "WARNING unsafe setting" in development.stderr
    assert "security.jwt_secret" in development.stderr


def test_loaded_settings_feed_enforcement_directly(project: Path) -> None:
    loaded = resolve_settings(
        Settings,
        service="orders",
        env="production",
        environ={"SAASFW_SECURITY__JWT_SECRET": STRONG, "SAASFW_RAW": "other-" + STRONG},
    )
    assert enforce_production_rules(loaded) == []
    with pytest.raises(ConfigError):
        enforce_production_rules(
            resolve_settings(Settings, service="orders", env="production", environ={})
        )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("memory://", None),
        ("redis://cache:6379/0", None),
        ("redis://:changeme@cache:6379/0", "password in URL: secret is a well-known placeholder"),
        ("postgresql://app:short@db/orders", "password in URL: secret is shorter than 32"),
        (f"postgresql://app:{STRONG}@db/orders", None),
        ("not-a-url-but-a-short-secret", "secret is shorter than 32"),
    ],
)
def test_secret_urls_are_judged_by_their_password(url: str, reason: str | None) -> None:
    class Storage(BaseModel):
        url: SecretStr = SecretStr("memory://")

    settings = Storage(url=SecretStr(url))
    found = list(weak_secrets_rule().check(settings, RuleContext("orders", "production")))
    messages = [v.message if isinstance(v, Violation) else v for v in found]
    if reason is None:
        assert messages == []
    else:
        assert len(messages) == 1
        assert messages[0].startswith(reason)


def test_refusals_mask_secrets_but_not_credential_free_urls() -> None:
    from pydantic import BaseModel, SecretStr

    from saasfw.config import (
        LoadedSettings,
        ProductionRule,
        ProductionRules,
        UnsafeSettingsError,
        Violation,
        enforce_production_rules,
    )

    class Section(BaseModel):
        storage_url: SecretStr = SecretStr("memory://")
        database_url: SecretStr = SecretStr("postgresql://u:Hunter2Hunter2Hunter2@db/x")

    def check(settings: object, context: object) -> list[Violation]:
        return [
            Violation("r", "rate limiting uses memory:// storage", "storage_url"),
            Violation("r", "reached postgresql://u:Hunter2Hunter2Hunter2@db/x", "database_url"),
        ]

    loaded = LoadedSettings(
        settings=Section(), service="s", env="production", config_dir=None, sources={}
    )
    with pytest.raises(UnsafeSettingsError) as refused:
        enforce_production_rules(loaded, ProductionRules([ProductionRule("r", check)]))
    report = refused.value.report()
    assert "uses memory:// storage" in report
    assert "Hunter2" not in report
