"""The layered loader: layers, variable mapping, strict validation and error reports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field, SecretStr, ValidationError

from saasfw.config import ConfigError, Problem, load_model, resolve_settings

WriteFile = Callable[[str, str], Path]


class DbSettings(BaseModel):
    url: str = "sqlite:///orders.db"
    pool_size: int = Field(default=5, ge=1, le=100)
    password: SecretStr = SecretStr("")


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000


class AppSettings(BaseModel):
    debug: bool = False
    name: str = "app"
    db: DbSettings = DbSettings()
    server: ServerSettings = ServerSettings()
    tags: list[str] = []
    labels: dict[str, str] = {}


def _problem(error: ConfigError, path: str) -> Problem:
    matches = [p for p in error.problems if p.path == path]
    assert matches, f"no problem at {path!r} in:\n{error.report()}"
    return matches[0]


def test_defaults_only_when_no_layer_exists(project: Path) -> None:
    loaded = resolve_settings(AppSettings, service="orders", env="development", environ={})
    assert loaded.settings.db.pool_size == 5
    assert loaded.config_dir is None
    assert set(loaded.sources.values()) == {"default"}
    assert isinstance(loaded.settings, AppSettings)
    assert isinstance(loaded.settings.db, DbSettings)


def test_yaml_layers_apply_in_order_with_line_sources(write: WriteFile) -> None:
    write("config/base.yaml", "name: base\nserver:\n  port: 1\n  host: h-base\n")
    write("config/orders/base.yaml", "name: svc-base\nserver:\n  port: 2\n")
    write("config/production.yaml", "server:\n  port: 3\n")
    write("config/orders/production.yaml", "db:\n  pool_size: 9\n")
    write("config/billing/production.yaml", "db:\n  pool_size: 50\n")
    loaded = resolve_settings(AppSettings, service="orders", env="production", environ={})
    settings = loaded.settings
    assert (settings.name, settings.server.port, settings.server.host) == ("svc-base", 3, "h-base")
    assert settings.db.pool_size == 9
    assert loaded.sources["name"] == "config/orders/base.yaml:1"
    assert loaded.sources["server.port"] == "config/production.yaml:2"
    assert loaded.sources["server.host"] == "config/base.yaml:4"
    assert loaded.sources["db.pool_size"] == "config/orders/production.yaml:2"
    assert loaded.sources["db.url"] == "default"


def test_environment_variables_beat_dotenv_and_yaml(write: WriteFile) -> None:
    write("config/base.yaml", "server:\n  port: 1\n")
    write(".env", "SAASFW_SERVER__PORT=2\nSAASFW_SERVER__HOST=from-dotenv\n")
    loaded = resolve_settings(
        AppSettings,
        service="orders",
        env="test",
        environ={"SAASFW_SERVER__PORT": "3", "saasfw_name": "lower-case-works"},
    )
    assert loaded.settings.server.port == 3
    assert loaded.settings.server.host == "from-dotenv"
    assert loaded.settings.name == "lower-case-works"
    assert loaded.sources["server.port"] == "env SAASFW_SERVER__PORT"
    assert loaded.sources["server.host"] == ".env:2 (SAASFW_SERVER__HOST)"


def test_complex_fields_take_json_from_variables(project: Path) -> None:
    loaded = resolve_settings(
        AppSettings,
        service="orders",
        env="test",
        environ={
            "SAASFW_TAGS": '["a", "b"]',
            "SAASFW_DB": '{"pool_size": 7}',
            "SAASFW_LABELS__TEAM": "payments",
        },
    )
    assert loaded.settings.tags == ("a", "b")  # loaded settings hold tuples, never lists
    assert loaded.settings.db.pool_size == 7
    assert loaded.settings.labels == {"team": "payments"}
    assert loaded.sources["db.pool_size"] == "env SAASFW_DB"


def test_environment_json_merges_into_a_yaml_section(write: WriteFile) -> None:
    write("config/base.yaml", "db:\n  url: sqlite:///orders_main.db\n")
    loaded = resolve_settings(
        AppSettings, service="orders", env="test", environ={"SAASFW_DB": '{"pool_size": 8}'}
    )
    assert loaded.settings.db.url == "sqlite:///orders_main.db"
    assert loaded.settings.db.pool_size == 8


def test_invalid_json_in_a_variable_is_reported(project: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_model(AppSettings, service="orders", env="test", environ={"SAASFW_TAGS": "a,b"})
    problem = _problem(caught.value, "tags")
    assert problem.source == "env SAASFW_TAGS"
    assert "JSON" in problem.message


def test_unknown_nested_variable_is_a_typo_but_foreign_prefix_variables_are_ignored(
    project: Path,
) -> None:
    environ = {"SAASFW_DB__POOL_SIZ": "3", "SAASFW_REQUIRE_SERVICES": "1"}
    with pytest.raises(ConfigError) as caught:
        load_model(AppSettings, service="orders", env="test", environ=environ)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.kind == "unknown_key"
    assert problem.source == "env SAASFW_DB__POOL_SIZ"
    assert "SAASFW_DB__POOL_SIZE" in problem.message


def test_yaml_expansion_uses_environment_then_dotenv(write: WriteFile) -> None:
    write(".env", "DB_HOST=dotenv-host\nNAME=from-dotenv\n")
    write(
        "config/base.yaml",
        """
        name: ${NAME}
        db:
          url: postgresql://${DB_HOST}:${DB_PORT:-5432}/orders
        server:
          host: "$${literal}"
        """,
    )
    settings = load_model(AppSettings, service="orders", env="test", environ={"NAME": "from-env"})
    assert settings.name == "from-env"
    assert settings.db.url == "postgresql://dotenv-host:5432/orders"
    assert settings.server.host == "${literal}"


def test_acceptance_2_five_problems_in_one_report(write: WriteFile) -> None:
    path = write(
        "config/production.yaml",
        """
        server:
          prot: 8080
        db:
          pool_size: 5
          pool_size: 6
        name: !!python/object:os.system {}
        debug: definitely
        tags:
          - ${UNSET_FOR_ACCEPTANCE}
        """,
    )
    assert path.exists()
    with pytest.raises(ConfigError) as caught:
        load_model(AppSettings, service="orders", env="production", environ={})
    error = caught.value
    by_kind = {p.kind: p for p in error.problems}
    assert by_kind["unknown_key"].source == "config/production.yaml:2"
    assert by_kind["unknown_key"].path == "server.prot"
    assert "did you mean 'port'" in by_kind["unknown_key"].message
    assert by_kind["duplicate_key"].source == "config/production.yaml:5"
    assert "first defined at line 4" in by_kind["duplicate_key"].message
    assert by_kind["unsafe_tag"].source == "config/production.yaml:6"
    assert "!!python/object:os.system" in by_kind["unsafe_tag"].message
    wrong_type = _problem(error, "debug")
    assert wrong_type.source == "config/production.yaml:7"
    assert "valid boolean" in wrong_type.message
    unset = by_kind["unset_variable"]
    assert unset.source == "config/production.yaml:9"
    assert "UNSET_FOR_ACCEPTANCE" in unset.message
    assert len(error.problems) == 5, error.report()
    report = str(error)
    for line in (2, 5, 6, 7, 9):
        assert f"config/production.yaml:{line}" in report


def test_constraint_violation_names_the_constraint(write: WriteFile) -> None:
    write("config/base.yaml", "db:\n  pool_size: 1000\n")
    with pytest.raises(ConfigError) as caught:
        load_model(AppSettings, service="orders", env="test", environ={})
    problem = _problem(caught.value, "db.pool_size")
    assert problem.source == "config/base.yaml:2"
    assert "less than or equal to 100" in problem.message


def test_missing_required_field_names_the_variable_to_set(project: Path) -> None:
    class Required(BaseModel):
        api_url: str

    with pytest.raises(ConfigError) as caught:
        load_model(Required, service="orders", env="test", environ={})
    problem = _problem(caught.value, "api_url")
    assert "SAASFW_API_URL" in problem.message


def test_unknown_environment_is_an_error(project: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_model(AppSettings, service="orders", environ={"SAASFW_ENV": "prod"})
    assert caught.value.problems[0].kind == "unknown_environment"
    assert caught.value.problems[0].source == "env SAASFW_ENV"


def test_environment_defaults_to_production_and_can_come_from_dotenv(write: WriteFile) -> None:
    assert resolve_settings(AppSettings, service="orders", environ={}).env == "production"
    write(".env", "SAASFW_ENV=development\n")
    assert resolve_settings(AppSettings, service="orders", environ={}).env == "development"
    loaded = resolve_settings(AppSettings, service="orders", environ={"SAASFW_ENV": "staging"})
    assert loaded.env == "staging"


@pytest.mark.parametrize("service", ["", "Orders", "../etc", "a" * 64, "1abc"])
def test_invalid_service_names_are_refused(project: Path, service: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_model(AppSettings, service=service, env="test", environ={})
    assert caught.value.problems[0].kind == "invalid_service"


def test_misnamed_layer_file_is_refused(write: WriteFile) -> None:
    write("config/prod.yaml", "debug: false\n")
    with pytest.raises(ConfigError) as caught:
        load_model(AppSettings, service="orders", env="production", environ={})
    assert caught.value.problems[0].kind == "unknown_layer"
    assert caught.value.problems[0].source == "config/prod.yaml"


def test_loaded_settings_are_immutable_at_every_level(project: Path) -> None:
    settings = load_model(AppSettings, service="orders", env="test", environ={})
    with pytest.raises(ValidationError):
        settings.debug = True
    with pytest.raises(ValidationError):
        settings.db.pool_size = 1
    with pytest.raises(ValidationError):
        settings.server.port = 1


def test_section_models_that_ignore_extra_keys_are_made_strict(write: WriteFile) -> None:
    class Loose(BaseModel):
        value: int = 0

    class Root(BaseModel):
        loose: Loose = Loose()

    write("config/base.yaml", "loose:\n  valeu: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_model(Root, service="orders", env="test", environ={})
    assert _problem(caught.value, "loose.valeu").kind == "unknown_key"


def test_config_dir_from_variable_must_exist(project: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_model(AppSettings, service="orders", env="test", environ={"SAASFW_CONFIG_DIR": "nope"})
    assert "configuration directory does not exist" in caught.value.problems[0].message


def test_explicit_env_file_must_exist_but_default_one_is_optional(project: Path) -> None:
    load_model(AppSettings, service="orders", env="test", environ={})
    with pytest.raises(ConfigError) as caught:
        load_model(AppSettings, service="orders", env="test", env_file="missing.env", environ={})
    assert caught.value.problems[0].source == "missing.env"
    assert "does not exist" in caught.value.problems[0].message


def test_yaml_keys_are_taken_as_written(write: WriteFile) -> None:
    write("config/base.yaml", "labels:\n  on: 'yes'\n  1: one\n")
    settings = load_model(AppSettings, service="orders", env="test", environ={})
    assert settings.labels == {"on": "yes", "1": "one"}


def test_merge_keys_and_anchors_are_supported(write: WriteFile) -> None:
    write(
        "config/base.yaml",
        """
        defaults: &server
          host: 0.0.0.0
          port: 1
        """,
    )
    with pytest.raises(ConfigError):  # 'defaults' is not a field: strictness still applies
        load_model(AppSettings, service="orders", env="test", environ={})

    class WithTemplates(AppSettings):
        templates: dict[str, ServerSettings] = {}

    write(
        "config/base.yaml",
        """
        templates:
          a: &server {host: 0.0.0.0, port: 1}
        server:
          <<: *server
          port: 2
        """,
    )
    loaded = resolve_settings(WithTemplates, service="orders", env="test", environ={})
    assert (loaded.settings.server.host, loaded.settings.server.port) == ("0.0.0.0", 2)
    assert loaded.sources["server.port"] == "config/base.yaml:5"


def test_model_must_be_a_pydantic_model(project: Path) -> None:
    with pytest.raises(TypeError, match="BaseModel subclass"):
        load_model(dict, service="orders", env="test", environ={})  # type: ignore[type-var]


def test_aliases_name_keys_and_variables(write: WriteFile) -> None:
    class Aliased(BaseModel):
        log_level: str = Field(default="info", alias="logLevel")

    write("config/base.yaml", "logLevel: debug\n")
    loaded = resolve_settings(Aliased, service="orders", env="test", environ={})
    assert loaded.settings.log_level == "debug"
    assert loaded.sources == {"logLevel": "config/base.yaml:1"}
    env = {"SAASFW_LOGLEVEL": "warning"}
    assert load_model(Aliased, service="orders", env="test", environ=env).log_level == "warning"


def test_secret_set_through_json_section_variable(project: Path) -> None:
    settings = load_model(
        AppSettings, service="orders", env="test", environ={"SAASFW_DB": '{"password": "pw-1"}'}
    )
    assert settings.db.password.get_secret_value() == "pw-1"


def test_errors_survive_pickling_and_sources_are_read_only(write: WriteFile) -> None:
    import pickle

    write("config/base.yaml", "debug: maybe\n")
    with pytest.raises(ConfigError) as caught:
        load_model(AppSettings, service="orders", env="test", environ={})
    copy = pickle.loads(pickle.dumps(caught.value))  # noqa: S301 - our own object
    assert copy.problems == caught.value.problems
    assert str(copy) == str(caught.value)
    write("config/base.yaml", "debug: false\n")
    loaded = resolve_settings(AppSettings, service="orders", env="test", environ={})
    with pytest.raises(TypeError):
        loaded.sources["debug"] = "forged"  # type: ignore[index]


def test_union_members_are_not_mistaken_for_keys(write: WriteFile) -> None:
    class A(BaseModel):
        kind: Literal["a"] = "a"
        x: int = 1

    class B(BaseModel):
        kind: Literal["b"] = "b"
        y: int = 2

    class WithUnion(BaseModel):
        backend: Annotated[A | B, Field(discriminator="kind")] = A()
        port: int | None = None

    write("config/base.yaml", "backend:\n  kind: b\n  z: 5\nport: []\n")
    with pytest.raises(ConfigError) as caught:
        load_model(WithUnion, service="orders", env="test", environ={})
    assert [(p.path, p.source) for p in caught.value.problems] == [
        ("backend.z", "config/base.yaml:3"),
        ("port", "config/base.yaml:4"),
    ]
    write("config/base.yaml", "backend:\n  kind: c\n")
    with pytest.raises(ConfigError) as caught:
        load_model(WithUnion, service="orders", env="test", environ={})
    assert [(p.path, p.source) for p in caught.value.problems] == [
        ("backend", "config/base.yaml:1")
    ]


def test_load_settings_is_a_deprecated_alias_of_load_model() -> None:
    import saasfw.config

    environ = {"SAASFW_SERVER__PORT": "9001"}
    with pytest.warns(DeprecationWarning, match=r"use saasfw\.config\.load_model") as caught:
        old = saasfw.config.load_settings(
            AppSettings, service="orders", env="test", config_dir=None, environ=environ
        )
    assert len(caught) == 1
    assert caught[0].filename == __file__  # the warning points at the caller
    new = load_model(AppSettings, service="orders", env="test", config_dir=None, environ=environ)
    assert old == new
    assert old.server.port == 9001
    with (
        pytest.warns(DeprecationWarning, match="load_model"),
        pytest.raises(ConfigError, match="pool_size"),
    ):
        saasfw.config.load_settings(
            AppSettings,
            service="orders",
            env="test",
            config_dir=None,
            environ={"SAASFW_DB__POOL_SIZE": "0"},
        )
