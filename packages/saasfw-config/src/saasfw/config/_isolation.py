"""Per-service database isolation: a service owns its database, and no two services share one.

The convention (also in the README): the settings hold the database URL at ``db.url`` and,
optionally, a schema at ``db.schema_name`` (saasfw-db's field names; both paths are
configurable). The *owner name* is the schema when one is set (and is not ``public``), else
the database name from the URL, or for SQLite the file name without its extension. A service
owns the name when, after lower-casing and turning ``-`` into ``_``, it equals the service
name or starts with ``<service>_``.
In-memory SQLite is private by nature and always passes.

Sharing is checked against every other service of the same configuration directory (each
``config/<service>/`` sub-directory): its URL and schema are read from its YAML layers for
the same environment (``base.yaml``, ``<service>/base.yaml``, ``<env>.yaml``,
``<service>/<env>.yaml``). Two services share a database when they point at the same
server (host, port) and database and the same schema, or at the same SQLite file.
``${VAR:-default}`` in a sibling's file is read with its default; a value that needs an
unset variable cannot be known from the files and is not compared (that service's own
check still enforces ownership when it starts).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import SecretBytes, SecretStr

from saasfw.config._lookup import value_at
from saasfw.core import ENVIRONMENTS, ProductionRule, RuleContext, Violation

_SERVICE_DIR = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "mysql": 3306, "mariadb": 3306}
_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True, slots=True)
class DatabaseTarget:
    """Where a URL (plus schema) points, without credentials."""

    location: str
    owner: str
    schema: str | None
    memory: bool = False

    def describe(self) -> str:
        if self.schema:
            return f"{self.location} (schema {self.schema})"
        return self.location


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (SecretStr, SecretBytes)):
        secret = value.get_secret_value()
        return secret.decode("utf-8", "replace") if isinstance(secret, bytes) else secret
    return str(value)


def database_target(url: str, schema: str | None = None) -> DatabaseTarget | None:
    """Parse a SQLAlchemy-style URL; None when it is not a recognizable database URL."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None
    backend = scheme.split("+", 1)[0].lower()
    if backend == "sqlite":
        file_part = rest.split("?", 1)[0]
        file_part = file_part[1:] if file_part.startswith("/") else file_part
        if file_part in ("", ":memory:") or "mode=memory" in rest:
            return DatabaseTarget("sqlite://:memory:", "", None, memory=True)
        path = Path(unquote(file_part)).resolve()
        return DatabaseTarget(f"sqlite:///{path}", path.name.split(".", 1)[0], None)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "localhost").lower()
    host = "localhost" if host in _LOCAL_HOSTS else host
    port = port or _DEFAULT_PORTS.get(backend)
    database = unquote(parts.path.lstrip("/")) or (parts.username or "")
    schema = schema.strip() if schema else None
    if schema and schema.lower() == "public":
        schema = None
    location = f"{backend}://{host}{f':{port}' if port else ''}/{database}"
    return DatabaseTarget(location, schema or database, schema)


def owned_by(owner: str, service: str) -> bool:
    """Whether the owner name (database, schema or file stem) belongs to ``service``."""
    name = owner.lower().replace("-", "_")
    svc = service.lower().replace("-", "_")
    return name == svc or name.startswith(svc + "_")


def _deep_merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = value


def _file_value(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _siblings(
    config_dir: Path, service: str, env: str, url_path: str, schema_path: str
) -> Iterator[tuple[str, tuple[str, str | None] | None, str | None]]:
    """(service, (url, schema) or None, problem) for every other service in ``config_dir``."""
    from saasfw.config._files import FileProblem, read_text
    from saasfw.config._yaml import parse_yaml

    try:
        entries = sorted(p for p in config_dir.iterdir() if p.is_dir())
    except OSError:
        return
    for directory in entries:
        name = directory.name
        if name == service or not _SERVICE_DIR.fullmatch(name):
            continue
        layers = (
            config_dir / "base.yaml",
            directory / "base.yaml",
            config_dir / f"{env}.yaml",
            directory / f"{env}.yaml",
        )
        if not any((directory / f"{layer}.yaml").exists() for layer in ("base", env)):
            continue
        merged: dict[str, Any] = {}
        unknown: set[tuple[str | int, ...]] = set()
        problem = None
        for layer in layers:
            if not layer.exists():
                continue
            try:
                text = read_text(layer)
            except FileProblem as exc:
                problem = f"{layer} {exc.reason}"
                break
            doc = parse_yaml(text, str(layer), lambda _name: None)
            unknown |= doc.reported
            _deep_merge(merged, doc.data)
        if problem is not None:
            yield name, None, problem
            continue
        wanted = {tuple(url_path.split(".")), tuple(schema_path.split("."))}
        if any(p[: len(w)] == w or w[: len(p)] == p for p in unknown for w in wanted):
            continue  # depends on a variable the files cannot tell: not comparable
        url = _file_value(merged, url_path)
        if not isinstance(url, str):
            continue
        schema = _file_value(merged, schema_path)
        yield name, (url, schema if isinstance(schema, str) else None), None


def _service_target(
    url: str, schema: str | None, service: str, schema_defaults_to_service: bool
) -> DatabaseTarget | None:
    target = database_target(url, schema)
    if (
        schema_defaults_to_service
        and not schema
        and target is not None
        and not target.location.startswith("sqlite:")
    ):
        return database_target(url, service)
    return target


def database_isolation_rule(
    *,
    url_path: str = "db.url",
    schema_path: str = "db.schema_name",
    schema_defaults_to_service: bool = False,
    fatal_in: frozenset[str] = frozenset(ENVIRONMENTS),
) -> ProductionRule:
    """The rule that the service owns its database and shares it with no sibling service.

    Holds trivially when the settings have no value at ``url_path``. Fatal in every
    environment by default: a shared database is a data-leak bug everywhere.

    Args:
        url_path: dotted path of the database URL (``str`` or ``SecretStr``).
        schema_path: dotted path of the optional schema name.
        schema_defaults_to_service: a server URL without a schema means the schema named
            after the service (saasfw-db's behaviour), for this service and its siblings.
        fatal_in: environments where a violation stops start-up.
    """

    def check(settings: Any, context: RuleContext) -> Iterator[Violation]:
        url = _text(value_at(settings, url_path))
        if not url:
            return
        schema = _text(value_at(settings, schema_path))
        target = _service_target(url, schema, context.service, schema_defaults_to_service)
        if target is None:
            yield Violation("db.isolation", "not a recognizable database URL", url_path)
            return
        if target.memory:
            return
        if not owned_by(target.owner, context.service):
            what = "schema" if target.schema else "database name"
            yield Violation(
                "db.isolation",
                f"database {target.describe()} does not belong to service "
                f"'{context.service}': its {what} must be '{context.service}' or start with "
                f"'{context.service}_'",
                schema_path if target.schema else url_path,
            )
        if context.config_dir is None:
            return
        for other, other_values, problem in _siblings(
            context.config_dir, context.service, context.env, url_path, schema_path
        ):
            other_target = (
                None
                if other_values is None
                else _service_target(*other_values, other, schema_defaults_to_service)
            )
            if problem is not None:
                yield Violation(
                    "db.isolation",
                    f"cannot verify isolation from service '{other}': {problem}",
                    url_path,
                )
            elif other_target is not None and (
                other_target.location,
                other_target.schema,
            ) == (target.location, target.schema):
                yield Violation(
                    "db.isolation",
                    f"services '{context.service}' and '{other}' share database "
                    f"{target.describe()}; give each service its own database or schema",
                    url_path,
                )

    return ProductionRule(
        "db.isolation",
        check,
        fatal_in,
        description="the service owns its database/schema/SQLite file and shares it with "
        "no other service of its config directory",
    )
