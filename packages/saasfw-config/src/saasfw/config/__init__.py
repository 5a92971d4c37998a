"""saasfw.config: layered, strict, secret-safe settings with production safety rules.

``load_model(Model, service="orders")`` reads model defaults, ``config/base.yaml``,
``config/<service>/base.yaml``, ``config/<env>.yaml``, ``config/<service>/<env>.yaml``,
``.env``, ``SAASFW_*`` variables and secret files, in that order, and returns a frozen,
validated instance (immutable all the way down: lists become tuples, dicts ``FrozenDict``)
or raises one ``ConfigError`` listing every problem. ``saasfw.config.testing`` proves it.
"""

from typing import TYPE_CHECKING

from saasfw.config._environments import Environment
from saasfw.config._errors import ConfigError, Problem, UnsafeSettingsError
from saasfw.config._frozen import FrozenDict
from saasfw.config._isolation import DatabaseTarget, database_isolation_rule, database_target
from saasfw.config._loader import LoadedSettings, load_model, load_settings, resolve_settings
from saasfw.config._report import effective_settings, render_effective_settings
from saasfw.config._rules import (
    ProductionRules,
    debug_rule,
    default_rules,
    enforce_production_rules,
    exit_if_unsafe,
    redact_secrets,
    secret_weakness,
    weak_secrets_rule,
)
from saasfw.config._variables import env_var_name, unknown_variables

# The production-check types are saasfw-core's, so a package states its rules without
# importing saasfw-config; they stay reachable here for existing code.
from saasfw.core import ProductionRule, RuleContext, Violation, lazy_exports

if TYPE_CHECKING:
    from saasfw.config._version import __version__

# importlib.metadata costs more than the rest of the package: read it on first use.
_LAZY = {"__version__": "saasfw.config._version"}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
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
