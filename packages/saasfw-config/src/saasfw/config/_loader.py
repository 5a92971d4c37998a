"""The layered loader: defaults < YAML < .env < environment < secret files, all validated.

``resolve_settings`` runs the layers in rank order (each in its own module) into one
``LoadState``, validates the merged values with the model's strict, frozen twin, and
reports every problem of every layer together in one ConfigError.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, TypeVar
from warnings import warn

from pydantic import BaseModel

from saasfw.config._env_layers import (
    dotenv_layer,
    dotenv_variables,
    environment_layer,
    judge_unknown,
)
from saasfw.config._environments import DEFAULT_ENVIRONMENT, choose_env
from saasfw.config._errors import ConfigError, Problem
from saasfw.config._secret_layers import secret_layers
from saasfw.config._state import LoadState
from saasfw.config._validation import validate
from saasfw.config._yaml_layers import yaml_layers

M = TypeVar("M", bound=BaseModel)
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


class _Auto:
    def __repr__(self) -> str:
        return "AUTO"


AUTO: Any = _Auto()


@dataclass(frozen=True, slots=True)
class LoadedSettings(Generic[M]):
    """A loaded, validated, frozen settings object with where each value came from.

    Attributes:
        settings: the frozen settings (an instance of a subclass of the model passed in).
        service: the service name the settings were loaded for.
        env: the environment (``development``, ``test``, ``staging`` or ``production``).
        config_dir: the configuration directory used, or None when it did not exist.
        sources: for every leaf setting (dotted path), the layer that won: ``default``,
            ``config/production.yaml:12``, ``env SAASFW_DB__URL``, ``.env:3 (...)``, ...
        warnings: what was wrong but not fatal here, e.g. an unknown top-level ``SAASFW_*``
            variable outside production (kind ``unknown_variable``); each was also logged
            on the ``saasfw.config`` logger.
    """

    settings: M
    service: str
    env: str
    config_dir: Path | None
    sources: Mapping[str, str]
    warnings: tuple[Problem, ...] = ()


def _in_reading_order(problems: list[Problem]) -> list[Problem]:
    """Group problems by file (in the order files were first mentioned), then by line."""
    files: dict[str, int] = {}

    def key(item: tuple[int, Problem]) -> tuple[int, int, int]:
        index, problem = item
        label, sep, line = problem.source.rpartition(":")
        if sep and line.isdigit():
            return files.setdefault(label, len(files)), int(line), index
        return files.setdefault(problem.source, len(files)), 0, index

    return [problem for _, problem in sorted(enumerate(problems), key=key)]


def _check_service(service: str) -> None:
    if not isinstance(service, str) or not _SERVICE_NAME.fullmatch(service):
        raise ConfigError(
            [
                Problem(
                    "",
                    "argument service",
                    f"invalid service name {str(service)[:40]!r}: use lowercase letters, digits, "
                    "'-' and '_', starting with a letter (at most 63 characters)",
                    "invalid_service",
                )
            ]
        )


def _read_dotenv(
    model: type[BaseModel],
    environ: Mapping[str, str],
    env_file: str | os.PathLike[str] | None,
    required: bool,
) -> tuple[LoadState, list[tuple[str, str, int]]]:
    probe = LoadState(model, environ, DEFAULT_ENVIRONMENT)
    if env_file is None:
        return probe, []
    return probe, dotenv_layer(probe, Path(env_file), str(env_file), required)


def _refusal(run: LoadState, service: str) -> ConfigError:
    """One ConfigError with every problem of the load, in reading order, secrets masked."""
    problems = [
        Problem(p.path, p.source, run.redact(p.message), p.kind)
        for p in _in_reading_order(run.problems)
    ]
    return ConfigError(
        problems, summary=f"invalid configuration for service '{service}' ({run.env})"
    )


def resolve_settings(
    model: type[M],
    *,
    service: str,
    env: str | None = None,
    config_dir: str | os.PathLike[str] | None = AUTO,
    env_file: str | os.PathLike[str] | None = AUTO,
    secrets_dir: str | os.PathLike[str] | None = AUTO,
    environ: Mapping[str, str] | None = None,
    allow_unknown_variables: bool | None = None,
    foreign_variables: Iterable[str] = (),
) -> LoadedSettings[M]:
    """Load ``model`` for ``service`` from every layer and report where each value came from.

    Args:
        model: any pydantic model; its strict, frozen twin is what gets validated.
        service: the service name (``[a-z][a-z0-9_-]*``), selecting ``config/<service>/``.
        env: the environment; default ``$SAASFW_ENV``, then ``SAASFW_ENV`` from the ``.env``
            file, then ``production`` (fail closed).
        config_dir: the configuration directory; default ``$SAASFW_CONFIG_DIR``, else
            ``config`` (optional when defaulted, required when given). None disables YAML.
        env_file: the ``.env`` file; default ``$SAASFW_ENV_FILE`` (required), else ``.env``
            (optional). None disables it.
        secrets_dir: a directory of secret files named like the variables
            (``SAASFW_DB__PASSWORD``); default ``$SAASFW_SECRETS_DIR``, else none.
        environ: the environment variables; default ``os.environ``.
        allow_unknown_variables: what a ``SAASFW_*`` variable (environment, ``.env`` or
            secrets directory) whose first segment names no field is: None (default) an
            error in production and a warning elsewhere, True a warning everywhere, False
            an error everywhere. Warnings are logged and returned in ``warnings``.
        foreign_variables: names (or ``fnmatch`` patterns such as ``SAASFW_TOOL_*``) of
            other tools' ``SAASFW_*`` variables, never reported; the loader's own control
            variables and those of saasfw's tools are always exempt.

    Raises:
        ConfigError: with every problem of every layer, never carrying a secret value.
    """
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"model must be a pydantic BaseModel subclass, got {model!r}")
    environ = os.environ if environ is None else environ
    _check_service(service)

    if env_file is AUTO:
        env_file = environ.get("SAASFW_ENV_FILE", ".env")
        env_file_required = "SAASFW_ENV_FILE" in environ
    else:
        env_file_required = env_file is not None
    # The .env file is read first: it may choose the environment (SAASFW_ENV).
    probe, dotenv_entries = _read_dotenv(model, environ, env_file, env_file_required)
    chosen = choose_env(env, environ, probe.dotenv)

    run = LoadState(model, environ, chosen)
    run.problems.extend(probe.problems)
    run.dotenv = probe.dotenv
    auto_dir = config_dir is AUTO
    directory = yaml_layers(run, None if auto_dir else config_dir, auto_dir, service)
    if env_file is not None:
        dotenv_variables(run, dotenv_entries, env_file)
    environment_layer(run)
    secret_layers(run, environ.get("SAASFW_SECRETS_DIR") if secrets_dir is AUTO else secrets_dir)
    fatal = (
        chosen == "production" if allow_unknown_variables is None else not allow_unknown_variables
    )
    warnings = judge_unknown(run, fatal, tuple(foreign_variables))

    settings = validate(run, model)
    if run.problems or settings is None:
        raise _refusal(run, service)
    return LoadedSettings(
        settings=settings,
        service=service,
        env=chosen,
        config_dir=directory,
        sources=MappingProxyType(run.leaf_sources(settings)),
        warnings=tuple(warnings),
    )


def load_model(
    model: type[M],
    *,
    service: str,
    env: str | None = None,
    config_dir: str | os.PathLike[str] | None = AUTO,
    env_file: str | os.PathLike[str] | None = AUTO,
    secrets_dir: str | os.PathLike[str] | None = AUTO,
    environ: Mapping[str, str] | None = None,
    allow_unknown_variables: bool | None = None,
    foreign_variables: Iterable[str] = (),
) -> M:
    """Load and validate ``model`` from every layer and return the frozen settings alone.

    The arguments are ``resolve_settings``'s; that one also says where each value came
    from (``LoadedSettings``), as ``saasfw.app.load_settings`` does for a service.

    Raises:
        ConfigError: with every problem of every layer, never carrying a secret value.
    """
    return resolve_settings(
        model,
        service=service,
        env=env,
        config_dir=config_dir,
        env_file=env_file,
        secrets_dir=secrets_dir,
        environ=environ,
        allow_unknown_variables=allow_unknown_variables,
        foreign_variables=foreign_variables,
    ).settings


def load_settings(
    model: type[M],
    *,
    service: str,
    env: str | None = None,
    config_dir: str | os.PathLike[str] | None = AUTO,
    env_file: str | os.PathLike[str] | None = AUTO,
    secrets_dir: str | os.PathLike[str] | None = AUTO,
    environ: Mapping[str, str] | None = None,
    allow_unknown_variables: bool | None = None,
    foreign_variables: Iterable[str] = (),
) -> M:
    """Deprecated alias of ``load_model``: same arguments, same result, plus a warning.

    Renamed because ``saasfw.app.load_settings`` returns ``LoadedSettings`` while this one
    returns the settings model; one name, two meanings, was a trap.
    """
    warn(
        "saasfw.config.load_settings is deprecated: use saasfw.config.load_model (same "
        "arguments, returns the settings model); saasfw.app.load_settings is another "
        "function, which returns LoadedSettings",
        DeprecationWarning,
        stacklevel=2,
    )
    return load_model(
        model,
        service=service,
        env=env,
        config_dir=config_dir,
        env_file=env_file,
        secrets_dir=secrets_dir,
        environ=environ,
        allow_unknown_variables=allow_unknown_variables,
        foreign_variables=foreign_variables,
    )
