import tomllib
from pathlib import Path

import saasfw.config


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.config.__all__ == sorted(saasfw.config.__all__)
    assert saasfw.config.__all__ == [
        "ConfigError",
        "DatabaseTarget",
        "Environment",
        "FrozenDict",
        "LoadedSettings",
        "Problem",
        "ProductionRule",
        "ProductionRules",
        "RuleContext",
        "UnsafeSettingsError",
        "Violation",
        "__version__",
        "database_isolation_rule",
        "database_target",
        "debug_rule",
        "default_rules",
        "effective_settings",
        "enforce_production_rules",
        "env_var_name",
        "exit_if_unsafe",
        "load_model",
        "load_settings",
        "redact_secrets",
        "render_effective_settings",
        "resolve_settings",
        "secret_weakness",
        "unknown_variables",
        "weak_secrets_rule",
    ]


def test_every_public_name_exists() -> None:
    for name in saasfw.config.__all__:
        assert hasattr(saasfw.config, name), name


def test_version_comes_from_distribution_metadata() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert saasfw.config.__version__ == project["project"]["version"]


def test_exceptions_form_one_family() -> None:
    assert issubclass(saasfw.config.UnsafeSettingsError, saasfw.config.ConfigError)
