"""``saasfw-config``: show the effective settings or check them, for CI and init containers.

Exit codes: 0 fine (warnings may be printed), 1 invalid configuration, 2 bad usage (unknown
option, a ``--model`` that cannot be imported), 78 unsafe settings (a fatal production
rule is violated), 70 an unexpected internal error. Reports go to stderr; ``show`` writes
the effective settings to stdout. No path prints a traceback or a secret value.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from saasfw.config._environments import ENVIRONMENTS
from saasfw.config._errors import ConfigError, UnsafeSettingsError
from saasfw.config._loader import resolve_settings
from saasfw.config._rules import EXIT_UNSAFE, ProductionRules, enforce_production_rules

EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70


class UsageError(Exception):
    """Internal: a command-line problem (exit 2)."""


def _import_object(spec: str, what: str) -> Any:
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"{what} must look like 'package.module:Name', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn: the project's own modules import
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"{what}: cannot import module {module_name!r} ({exc})") from None
    except Exception as exc:
        raise UsageError(
            f"{what}: importing {module_name!r} failed ({type(exc).__name__}: {exc})"
        ) from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"{what}: {module_name!r} has no attribute {attribute!r}") from None
    return target


def _import_model(spec: str | None) -> type[BaseModel]:
    if not spec:
        raise UsageError(
            "name the settings model with --model package.module:Class (or set SAASFW_CONFIG_MODEL)"
        )
    model = _import_object(spec, "--model")
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise UsageError(f"--model {spec!r} is not a pydantic model class")
    return model


def _load_rules(spec: str | None) -> ProductionRules | None:
    if not spec:
        return None
    rules = _import_object(spec, "--rules")
    if callable(rules) and not isinstance(rules, ProductionRules):
        try:
            rules = rules()
        except Exception as exc:
            raise UsageError(f"--rules {spec!r} failed ({type(exc).__name__}: {exc})") from None
    if not isinstance(rules, ProductionRules):
        raise UsageError(f"--rules {spec!r} is not a ProductionRules (or a factory of one)")
    return rules


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saasfw-config", description="Show or check saasfw layered settings."
    )
    from saasfw.config._version import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--service", required=True, help="service name (config/<service>/)")
    common.add_argument(
        "--model",
        default=os.environ.get("SAASFW_CONFIG_MODEL"),
        help="settings model as package.module:Class (default $SAASFW_CONFIG_MODEL)",
    )
    common.add_argument(
        "--env", choices=ENVIRONMENTS, help="environment (default $SAASFW_ENV, else production)"
    )
    common.add_argument("--config-dir", help="configuration directory (default ./config)")
    common.add_argument("--env-file", help="dotenv file (default ./.env when present)")
    common.add_argument("--secrets-dir", help="directory of secret files")
    common.add_argument(
        "--allow-variable",
        action="append",
        default=[],
        metavar="NAME",
        help="another tool's SAASFW_* variable (or fnmatch pattern) that is not a setting; "
        "repeatable (unknown SAASFW_* variables are an error in production)",
    )
    show = commands.add_parser(
        "show", parents=[common], help="print the effective settings, secrets masked"
    )
    show.add_argument("--format", choices=("yaml", "json"), default="yaml")
    check = commands.add_parser(
        "check", parents=[common], help="validate and apply production safety rules"
    )
    check.add_argument(
        "--rules",
        help="package.module:name of a ProductionRules (or a factory of one) replacing the "
        "built-in rules",
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    # The loader's warnings (unknown SAASFW_* variables) and the rules' go to stderr as
    # "warning: ..." lines, bound to the stderr of this call.
    log = logging.getLogger("saasfw.config")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    log.addHandler(handler)
    propagate, log.propagate = log.propagate, False
    try:
        return _run_logged(args, log)
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _run_logged(args: argparse.Namespace, log: logging.Logger) -> int:
    from saasfw.config._loader import AUTO

    model = _import_model(args.model)
    rules = _load_rules(getattr(args, "rules", None))
    loaded = resolve_settings(
        model,
        service=args.service,
        env=args.env,
        config_dir=AUTO if args.config_dir is None else args.config_dir,
        env_file=AUTO if args.env_file is None else args.env_file,
        secrets_dir=AUTO if args.secrets_dir is None else args.secrets_dir,
        foreign_variables=args.allow_variable,
    )
    if args.command == "show":
        from saasfw.config._report import render_effective_settings

        sys.stdout.write(render_effective_settings(loaded, args.format))
        return 0
    count = len(loaded.warnings) + len(enforce_production_rules(loaded, rules, log=log))
    print(
        f"ok: settings for service '{loaded.service}' ({loaded.env}) are valid"
        f" with {count} warning{'' if count == 1 else 's'}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``saasfw-config`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except UnsafeSettingsError as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_UNSAFE
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_INVALID
    except UsageError as exc:
        print(f"saasfw-config: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback, even for a bug in a user's model
        print(f"saasfw-config: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


def console_main() -> None:  # pragma: no cover - exercised through the installed script
    raise SystemExit(main())
