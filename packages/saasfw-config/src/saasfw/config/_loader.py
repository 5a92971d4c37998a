"""The layered loader: defaults < YAML < .env < environment < secret files, all validated.

Values are merged into one plain dict while every leaf remembers the layer (and for YAML
the line) it came from; the strict, frozen twin of the model then validates the result, and
every problem of every layer is reported together in one ConfigError.
"""

from __future__ import annotations

import io
import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from saasfw.config._errors import ConfigError, Problem, Redactor
from saasfw.config._files import MAX_SECRET_BYTES, FileProblem, file_stat, read_text
from saasfw.config._model import (
    annotation_at,
    fields_by_key,
    harden,
    is_complex,
    is_secret,
    mapping_value_type,
    model_of,
    sequence_item_type,
    union_models,
)
from saasfw.config._variables import (
    CONTROL_VARIABLES,
    ENV_PREFIX,
    is_foreign,
    nested_hint,
    resolve_variable,
    unknown_top_level_message,
)

M = TypeVar("M", bound=BaseModel)
Path_ = tuple[str | int, ...]

Environment = Literal["development", "test", "staging", "production"]
ENVIRONMENTS: tuple[str, ...] = get_args(Environment)
DEFAULT_ENVIRONMENT = "production"
logger = logging.getLogger("saasfw.config")
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,62}")


class _Auto:
    def __repr__(self) -> str:
        return "AUTO"


AUTO: Any = _Auto()


def env_var_name(path: Path_) -> str:
    """The environment variable that sets ``path`` (``("db", "url")`` -> ``SAASFW_DB__URL``)."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in path)


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True, slots=True)
class _Source:
    label: str
    lines: Mapping[Path_, int] | None = None

    def describe(self, path: Path_) -> str:
        if self.lines is not None:
            for size in range(len(path), 0, -1):
                line = self.lines.get(path[:size])
                if line is not None:
                    return f"{self.label}:{line}"
        return self.label


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


class _Run:
    """The state of one load."""

    def __init__(self, model: type[BaseModel], environ: Mapping[str, str], env: str) -> None:
        self.model = model
        self.environ = environ
        self.env = env
        self.data: dict[str, Any] = {}
        self.sources: dict[Path_, _Source] = {}
        self.problems: list[Problem] = []
        self.reported: set[Path_] = set()
        self.redact = Redactor()
        self.dotenv: dict[str, str] = {}
        self.pointers: dict[Path_, tuple[str, str]] = {}
        self.unknown: list[tuple[str, str]] = []  # (name, source) of unknown top-level names

    # -- merging ----------------------------------------------------------------------------

    def problem(self, path: Path_, source: str, message: str, kind: str) -> None:
        self.problems.append(Problem(dotted(path), source, message, kind))
        if path:  # a whole-file problem must not hide the other layers' errors
            self.reported.add(path)

    def merge(self, patch: Mapping[str, Any], source: _Source) -> None:
        self._merge(self.data, patch, source, ())

    def _merge(
        self, target: dict[str, Any], patch: Mapping[str, Any], source: _Source, path: Path_
    ) -> None:
        for key, value in patch.items():
            child = (*path, key)
            if isinstance(value, dict):
                existing = target.get(key)
                if not isinstance(existing, dict):
                    self._drop_sources(child)
                    existing = target[key] = {}
                    if not value:
                        self.sources[child] = source
                self._merge(existing, value, source, child)
            else:
                self._drop_sources(child)
                target[key] = value
                self.sources[child] = source

    def _drop_sources(self, prefix: Path_) -> None:
        size = len(prefix)
        for key in [k for k in self.sources if k[:size] == prefix]:
            del self.sources[key]

    def set_value(self, path: Path_, value: Any, source: _Source) -> None:
        patch: Any = value
        for part in reversed(path):
            patch = {part: patch}
        self.merge(patch, source)

    def lookup(self, name: str) -> str | None:
        """Variables for ``${VAR}``: the process environment, then the ``.env`` file."""
        value = self.environ.get(name)
        return value if value is not None else self.dotenv.get(name)

    # -- YAML -------------------------------------------------------------------------------

    def yaml_layer(self, path: Path, display: str) -> None:
        if not os.path.lexists(path):
            return
        from saasfw.config._yaml import parse_yaml

        try:
            text = read_text(path)
        except FileProblem as exc:
            self.problem((), display, f"configuration file {exc.reason}", exc.kind)
            return
        doc = parse_yaml(text, display, self.lookup)
        self.problems.extend(doc.problems)
        self.reported.update(doc.reported)
        self.merge(doc.data, _Source(display, doc.lines))

    # -- environment-style variables ----------------------------------------------------------

    def resolve_name(self, rest: str) -> tuple[Path_, Any] | tuple[None, int]:
        """Map ``DB__URL`` onto a field path and its annotation, or say where it stopped."""
        return resolve_variable(self.model, rest)

    def variable(self, name: str, value: str, label: str) -> None:
        rest = name[len(ENV_PREFIX) :]
        path, annotation = self.resolve_name(rest)
        if path is not None:
            self.assign(path, annotation, value, _Source(label))
            return
        if rest.upper().endswith("_FILE"):
            target, _ = self.resolve_name(rest[: -len("_FILE")])
            if target is not None:
                self.pointers[target] = (value, label)
                return
        depth = annotation
        if depth == 0:  # judged once every layer is read: see unknown_variables()
            self.unknown.append((name, label))
            return
        segments = rest.lower().split("__")
        hint = (
            nested_hint(self.model, segments[:depth], segments[depth])
            if depth < len(segments)
            else ""
        )
        self.problem(
            tuple(segments[: depth + 1]),
            label,
            f"unknown setting: {name} does not name a field{hint}",
            "unknown_key",
        )

    def unknown_variables(self, fatal: bool, allow: tuple[str, ...]) -> list[Problem]:
        """Report unknown top-level ``SAASFW_*`` names: problems when fatal, else warnings."""
        warnings: list[Problem] = []
        for name, label in self.unknown:
            if is_foreign(name, allow):
                continue
            message = unknown_top_level_message(self.model, name)
            if fatal:
                message += (
                    f" ({self.env} refuses unknown SAASFW_ variables: correct or remove it, or "
                    "let the loader allow it: allow_unknown_variables / foreign_variables)"
                )
                self.problems.append(Problem("", label, message, "unknown_variable"))
            else:
                warnings.append(Problem("", label, message, "unknown_variable"))
                logger.warning("%s (%s)", message, label)
        return warnings

    def assign(self, path: Path_, annotation: Any, value: str, source: _Source) -> None:
        parsed: Any = value
        if is_secret(annotation):
            self.redact.add(value)
        if is_complex(annotation):
            import json

            try:
                parsed = json.loads(value)
            except ValueError:
                self.problem(
                    path,
                    source.label,
                    "expected a JSON value (this setting is a list, mapping or section)",
                    "invalid_json",
                )
                return
        self.set_value(path, parsed, source)

    def environment_layer(self) -> None:
        for name, value in sorted(self.environ.items()):
            upper = name.upper()
            if upper.startswith(ENV_PREFIX) and upper not in CONTROL_VARIABLES:
                self.variable(name, value, f"env {name}")

    def dotenv_layer(self, path: Path, display: str, required: bool) -> list[tuple[str, str, int]]:
        if not required and not os.path.lexists(path):
            return []
        try:
            text = read_text(path)
        except FileProblem as exc:
            self.problem((), display, f"env file {exc.reason}", exc.kind)
            return []
        from dotenv.parser import parse_stream

        entries: list[tuple[str, str, int]] = []
        for binding in parse_stream(io.StringIO(text)):
            original = binding.original
            line = original.line + len(original.string) - len(original.string.lstrip("\r\n"))
            if binding.error:
                self.problem((), f"{display}:{line}", "cannot parse this line", "dotenv")
            elif binding.key is not None and binding.value is not None:
                self.dotenv[binding.key] = binding.value
                entries.append((binding.key, binding.value, line))
        return entries

    # -- secret files -----------------------------------------------------------------------

    def read_secret(self, path: Path, label: str) -> str | None:
        try:
            info = file_stat(path)
            world_readable = stat.S_ISREG(info.st_mode) and info.st_mode & stat.S_IROTH
            if self.env == "production" and world_readable:
                raise FileProblem(
                    f"is readable by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                    "production refuses it: chmod o-r (Kubernetes: defaultMode 0440)",
                    "secret_permissions",
                )
            text = read_text(path, limit=MAX_SECRET_BYTES)
        except FileProblem as exc:
            self.problems.append(Problem("", label, f"secret file {exc.reason}", exc.kind))
            return None
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        self.redact.add(text)
        return text

    def secrets_dir_layer(self, directory: Path) -> None:
        try:
            entries = sorted(directory.iterdir())
        except OSError as exc:
            reason = "does not exist" if isinstance(exc, FileNotFoundError) else "cannot be read"
            self.problems.append(Problem("", str(directory), f"secrets directory {reason}", "file"))
            return
        for entry in entries:
            # Kubernetes keeps its bookkeeping in dot-entries (..data, ..2024_01_01...).
            if entry.name.startswith(".") or entry.is_dir():
                continue
            if not entry.name.upper().startswith(ENV_PREFIX):
                continue
            rest = entry.name[len(ENV_PREFIX) :]
            path, annotation = self.resolve_name(rest)
            label = f"secrets dir {entry}"
            if path is None:
                if annotation != 0:
                    self.problem(
                        (),
                        label,
                        f"unknown setting: {entry.name} does not name a field",
                        "unknown_key",
                    )
                else:
                    self.unknown.append((entry.name, label))
                continue
            text = self.read_secret(entry, label)
            if text is not None:
                self.assign(path, annotation_at(self.model, path), text, _Source(label))

    def pointer_layer(self) -> None:
        for path, (file_name, origin) in self.pointers.items():
            label = f"secret file {file_name} ({origin.removeprefix('env ')})"
            text = self.read_secret(Path(file_name), label)
            if text is not None:
                self.assign(path, annotation_at(self.model, path), text, _Source(label))

    # -- validation ---------------------------------------------------------------------------

    def collect_secrets(self, annotation: Any, value: Any) -> None:
        """Teach the redactor every raw secret value and every password inside a URL."""
        if isinstance(value, str):
            if is_secret(annotation):
                self.redact.add(value)
            if "://" in value:
                try:
                    password = urlsplit(value).password
                except ValueError:
                    password = None
                if password:
                    self.redact.add(password)
            return
        nested = model_of(annotation) if annotation is not None else None
        if isinstance(value, dict):
            for key, item in value.items():
                child: Any = None
                if nested is not None:
                    found = nested.model_fields.get(key) or next(
                        (
                            info
                            for info in nested.model_fields.values()
                            if key in (info.alias, info.validation_alias)
                        ),
                        None,
                    )
                    child = found.annotation if found is not None else None
                elif annotation is not None:
                    child = mapping_value_type(annotation)
                self.collect_secrets(child, item)
        elif isinstance(value, list):
            element = sequence_item_type(annotation) if annotation is not None else None
            for item in value:
                self.collect_secrets(element, item)

    def validate(self, model: type[M]) -> M | None:
        self.collect_secrets(self.model, self.data)
        twin = harden(model)
        try:
            return twin.model_validate(self.data)
        except ValidationError as exc:
            for error in exc.errors(include_url=False, include_input=False):
                self.validation_problem(tuple(error["loc"]), error["type"], error["msg"])
            return None

    def display_path(self, loc: Path_) -> Path_:
        """The data path of a pydantic error location, without union tags.

        pydantic puts union members into ``loc`` (``("backend", "b", "z")`` for a
        discriminated union, ``("port", "int")`` for ``int | str``). A segment is kept when
        it exists in the data, or names a field of the model at that point (a missing field
        or a default value); anything else is such a tag and is left out.
        """
        path: list[str | int] = []
        current: Any = self.data
        annotation: Any = self.model
        for part in loc:
            models = [] if annotation is None else union_models(annotation)
            field = None
            for candidate in models:
                found = fields_by_key(candidate).get(part) if isinstance(part, str) else None
                if found is not None:
                    field = found[1]
                    break
            in_dict = isinstance(current, dict) and part in current
            in_list = isinstance(current, list) and isinstance(part, int) and part < len(current)
            if not (in_dict or in_list or field is not None):
                continue
            path.append(part)
            current = current[part] if in_dict or in_list else None
            if field is not None:
                annotation = field.annotation
            elif annotation is None:
                pass
            elif in_dict:
                annotation = mapping_value_type(annotation)
            else:
                annotation = sequence_item_type(annotation)
        return tuple(path)

    def validation_problem(self, loc: Path_, kind: str, message: str) -> None:
        path = self.display_path(loc)
        key = tuple(path)
        for reported in self.reported:
            if key[: len(reported)] == reported:
                return  # already explained by a YAML/expansion problem at this path
        source = self.source_of(key)
        if kind == "extra_forbidden":
            message = f"unknown key '{key[-1]}'" + self.suggestion(key)
            kind = "unknown_key"
        elif kind == "missing":
            source = "not set in any layer"
            message = f"required setting is missing (set it in YAML or as {env_var_name(key)})"
        else:
            message = f"{message} [{kind}]"
        self.problems.append(Problem(dotted(key), source, message, kind))

    def suggestion(self, key: Path_) -> str:
        parent = annotation_at(self.model, key[:-1])
        nested = model_of(parent) if parent is not None else None
        if nested is None:
            return ""
        import difflib

        close = difflib.get_close_matches(str(key[-1]), list(nested.model_fields), n=1)
        return f" (did you mean '{close[0]}'?)" if close else " (not a field of this section)"

    def source_of(self, key: Path_) -> str:
        for size in range(len(key), 0, -1):
            source = self.sources.get(key[:size])
            if source is not None:
                return source.describe(key)
        size = len(key)
        for path, source in self.sources.items():
            if path[:size] == key:  # a section whose values came from one layer or more
                return source.describe(key)
        return "default"

    def leaf_sources(self, settings: BaseModel) -> dict[str, str]:
        out: dict[str, str] = {}
        self._walk_sources(settings, (), out)
        return out

    def _walk_sources(self, value: Any, path: Path_, out: dict[str, str]) -> None:
        if isinstance(value, BaseModel):
            for name, info in type(value).model_fields.items():
                key = info.validation_alias if isinstance(info.validation_alias, str) else None
                self._walk_sources(getattr(value, name), (*path, key or info.alias or name), out)
            return
        size = len(path)
        if isinstance(value, dict) and any(
            len(k) > size and k[:size] == path for k in self.sources
        ):
            for key, item in value.items():
                self._walk_sources(item, (*path, str(key)), out)
            return
        source = self.sources.get(path)
        out[dotted(path)] = source.describe(path) if source is not None else "default"


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


def _choose_env(env: str | None, environ: Mapping[str, str], dotenv: Mapping[str, str]) -> str:
    if env is not None:
        chosen, origin = env, "argument env"
    elif "SAASFW_ENV" in environ:
        chosen, origin = environ["SAASFW_ENV"], "env SAASFW_ENV"
    elif "SAASFW_ENV" in dotenv:
        chosen, origin = dotenv["SAASFW_ENV"], ".env (SAASFW_ENV)"
    else:
        return DEFAULT_ENVIRONMENT
    if chosen not in ENVIRONMENTS:
        raise ConfigError(
            [
                Problem(
                    "",
                    origin,
                    f"unknown environment '{chosen[:40]}': expected one of "
                    + ", ".join(ENVIRONMENTS),
                    "unknown_environment",
                )
            ]
        )
    return chosen


def _check_layer_names(run: _Run, directory: Path, display: str) -> None:
    """Refuse YAML files that look like layers but would be silently ignored (typos)."""
    allowed = {"base.yaml", *(f"{env}.yaml" for env in ENVIRONMENTS)}
    try:
        names = sorted(entry.name for entry in directory.iterdir() if entry.is_file())
    except OSError:
        return
    for name in names:
        if name.endswith((".yaml", ".yml")) and name not in allowed:
            run.problems.append(
                Problem(
                    "",
                    f"{display}/{name}",
                    "not a configuration layer: expected base.yaml or <env>.yaml with env "
                    "one of " + ", ".join(ENVIRONMENTS),
                    "unknown_layer",
                )
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

    if env_file is AUTO:
        env_file_required = "SAASFW_ENV_FILE" in environ
        env_file = environ.get("SAASFW_ENV_FILE", ".env")
    else:
        env_file_required = env_file is not None
    probe = _Run(model, environ, DEFAULT_ENVIRONMENT)
    dotenv_entries: list[tuple[str, str, int]] = []
    if env_file is not None:
        dotenv_entries = probe.dotenv_layer(Path(env_file), str(env_file), env_file_required)
    chosen = _choose_env(env, environ, probe.dotenv)

    run = _Run(model, environ, chosen)
    run.problems.extend(probe.problems)
    run.dotenv = probe.dotenv

    directory: Path | None
    if config_dir is AUTO:
        directory = Path(environ.get("SAASFW_CONFIG_DIR", "config"))
        directory_required = "SAASFW_CONFIG_DIR" in environ
    else:
        directory = None if config_dir is None else Path(config_dir)
        directory_required = directory is not None
    if directory is not None and not directory.is_dir():
        if directory_required:
            what = "is not a directory" if directory.exists() else "does not exist"
            run.problems.append(
                Problem("", str(directory), f"configuration directory {what}", "file")
            )
        directory = None
    if directory is not None:
        service_dir = directory / service
        _check_layer_names(run, directory, str(directory))
        if service_dir.is_dir():
            _check_layer_names(run, service_dir, str(service_dir))
        for layer in (
            directory / "base.yaml",
            service_dir / "base.yaml",
            directory / f"{chosen}.yaml",
            service_dir / f"{chosen}.yaml",
        ):
            run.yaml_layer(layer, str(layer))

    for name, value, line in dotenv_entries:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in CONTROL_VARIABLES:
            run.variable(name, value, f"{env_file}:{line} ({name})")
    run.environment_layer()

    if secrets_dir is AUTO:
        secrets_dir = environ.get("SAASFW_SECRETS_DIR")
    if secrets_dir is not None:
        run.secrets_dir_layer(Path(secrets_dir))
    run.pointer_layer()
    fatal = (
        chosen == "production" if allow_unknown_variables is None else not allow_unknown_variables
    )
    warnings = run.unknown_variables(fatal, tuple(foreign_variables))

    settings = run.validate(model)
    if run.problems or settings is None:
        problems = [
            Problem(p.path, p.source, run.redact(p.message), p.kind)
            for p in _in_reading_order(run.problems)
        ]
        raise ConfigError(
            problems, summary=f"invalid configuration for service '{service}' ({chosen})"
        )
    return LoadedSettings(
        settings=settings,
        service=service,
        env=chosen,
        config_dir=directory,
        sources=MappingProxyType(run.leaf_sources(settings)),
        warnings=tuple(warnings),
    )


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
    """Load and validate ``model`` from every layer; see ``resolve_settings`` for the args."""
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
