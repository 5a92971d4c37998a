"""``saasfw-db``: run a service's Alembic migrations with its saasfw settings.

Usage::

    saasfw-db --service orders --versions migrations/versions upgrade [head]
    saasfw-db --service orders --versions migrations/versions downgrade -1
    saasfw-db --service orders --versions migrations/versions \\
        --metadata orders.models:Base.metadata revision -m "add orders" --autogenerate
    saasfw-db --service orders --versions migrations/versions current
    saasfw-db --service orders --versions migrations/versions check   # exit 1 when behind

Settings come from ``SAASFW_DB__<FIELD>`` environment variables (``SAASFW_DB__URL``, ...),
the service from ``--service`` or ``SAASFW_SERVICE_NAME`` (``-`` read as ``_``, as
``saasfw.app`` names the database of ``orders-service`` ``orders_service``), the versions
directory from ``--versions`` or ``SAASFW_DB_MIGRATIONS``: a path, or ``module:ATTRIBUTE``
naming it in an installed package (``orders_service.migrations:VERSIONS_DIR``), which works
wherever the package is installed (a container image).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence

from pydantic import ValidationError
from sqlalchemy import MetaData

from saasfw.db._errors import DatabaseError
from saasfw.db._settings import DbSettings

ENV_PREFIX = "SAASFW_DB__"
_REFERENCE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$")


def settings_from_env(environ: Mapping[str, str] | None = None) -> DbSettings:
    """``DbSettings`` from ``SAASFW_DB__<FIELD>`` variables (the rest keeps its default).

    Without ``SAASFW_DB__DATA_DIR``, the service-wide ``SAASFW_DATA_DIR`` is the SQLite
    root, as in a ``saasfw.app`` service, so the CLI finds the service's own file.
    """
    environ = os.environ if environ is None else environ
    values = {
        name: environ[f"{ENV_PREFIX}{name.upper()}"]
        for name in DbSettings.model_fields
        if f"{ENV_PREFIX}{name.upper()}" in environ
    }
    if "data_dir" not in values and environ.get("SAASFW_DATA_DIR"):
        values["data_dir"] = environ["SAASFW_DATA_DIR"]
    return DbSettings.model_validate(values)


def _resolve(reference: str) -> object:
    module_name, _, attribute = reference.partition(":")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def resolve_versions(value: str) -> str:
    """The versions directory named by ``value``: a path, or ``module:ATTRIBUTE`` holding one."""
    if not _REFERENCE.fullmatch(value):
        return value
    try:
        target = _resolve(value)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"--versions {value!r}: cannot import it ({error})") from None
    if not isinstance(target, str | os.PathLike):
        raise TypeError(f"--versions {value!r} is not a path (got {type(target).__name__})")
    return os.fspath(target)


def load_metadata(reference: str) -> MetaData:
    """Import ``package.module:attr.path`` and return the MetaData it names."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"--metadata {reference!r}: expected 'module:attribute'")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not isinstance(target, MetaData):
        target = getattr(target, "metadata", target)
    if not isinstance(target, MetaData):
        raise TypeError(f"--metadata {reference!r} is not a SQLAlchemy MetaData")
    return target


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saasfw-db", description="Run a saasfw service's database migrations."
    )
    parser.add_argument("--service", default=os.environ.get("SAASFW_SERVICE_NAME"))
    parser.add_argument("--versions", default=os.environ.get("SAASFW_DB_MIGRATIONS"))
    parser.add_argument("--metadata", help="module:attribute of the models' MetaData")
    parser.add_argument(
        "--create-schema",
        action="store_true",
        help="create the PostgreSQL schema if missing (development)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    upgrade = commands.add_parser("upgrade", help="upgrade to a revision (default head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = commands.add_parser("downgrade", help="downgrade to a revision (-1, base, id)")
    downgrade.add_argument("revision")
    revision = commands.add_parser("revision", help="create a new revision file")
    revision.add_argument("-m", "--message", required=True)
    revision.add_argument("--autogenerate", action="store_true")
    commands.add_parser("current", help="show the current revision")
    commands.add_parser(
        "check", help="compare with the scripts' head: exit 0 at head or ahead, 1 when behind"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``saasfw-db``; returns the process exit status."""
    from alembic import command
    from alembic.util import CommandError

    from saasfw.db.migrations._config import migration_config

    parser = _parser()
    args = parser.parse_args(argv)
    alembic_logger = logging.getLogger("alembic")
    if argv is None and not alembic_logger.handlers:  # a real command line, not an embedding
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s [%(name)s] %(message)s"))
        alembic_logger.addHandler(handler)
        alembic_logger.setLevel(logging.INFO)
    if not args.service:
        parser.error("--service (or SAASFW_SERVICE_NAME) is required")
    if not args.versions:
        parser.error("--versions (or SAASFW_DB_MIGRATIONS) is required")
    service = str(args.service).replace("-", "_")
    try:
        settings = settings_from_env()
        versions = resolve_versions(args.versions)
        metadata = load_metadata(args.metadata) if args.metadata else None
        config = migration_config(
            settings,
            service=service,
            versions_dir=versions,
            metadata=metadata,
            create_schema=args.create_schema,
        )
        if args.command == "upgrade":
            command.upgrade(config, args.revision)
        elif args.command == "downgrade":
            command.downgrade(config, args.revision)
        elif args.command == "revision":
            if args.autogenerate and metadata is None:
                parser.error("--autogenerate needs --metadata module:attribute")
            command.revision(config, message=args.message, autogenerate=args.autogenerate)
        elif args.command == "check":
            return _check(settings, service, versions)
        else:
            command.current(config, verbose=False)
    except (
        ValidationError,
        ValueError,
        TypeError,
        ImportError,
        CommandError,
        DatabaseError,
    ) as error:
        print(f"saasfw-db: {error}", file=sys.stderr)
        return 2
    return 0


def _check(settings: DbSettings, service: str, versions: str) -> int:
    import asyncio

    from saasfw.db._database import Database
    from saasfw.db.migrations._status import SchemaStatus, SchemaVersionCheck

    async def run() -> SchemaStatus:
        database = Database(settings, service=service)
        try:
            return await SchemaVersionCheck(database, versions_dir=versions).status()
        finally:
            await database.close()

    status = asyncio.run(run())
    current = " ".join(status.current) or "(none)"
    print(f"{status.state}: database at {current}, scripts at {' '.join(status.heads)}")
    return 0 if status.ready else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
