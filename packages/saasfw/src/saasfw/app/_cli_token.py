"""``saasfw dev token``: mint a development access token with the service's own signing key.

The token is signed exactly as the running service would sign it: the settings are loaded
through :func:`saasfw.app.load_settings` (``config/<service>/``, ``.env``, ``SAASFW_*``
variables, secret files) and completed as the app completes them, so in development the key
is the one kept in ``<data_dir>/<service>/dev-secrets.json``. Outside ``development`` and
``test`` the command refuses before it reads any key: a shell on a production host must
not be a way to forge tokens. The environment is read as the loader reads it
(``$SAASFW_ENV``, then ``SAASFW_ENV`` in the ``.env`` file, then ``production``); there is
deliberately no ``--env`` flag that could talk a production box into development.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["EXIT_REFUSED", "add_token_parser", "run_token"]

EXIT_REFUSED = 78  # EX_CONFIG, as serve() uses for settings refused in production
EXIT_USAGE = 2
_DEVELOPMENT = ("development", "test")

USAGE_EXAMPLE = """\
example:
  cd demo && SAASFW_ENV=development saasfw dev token --sub alice --roles admin --ttl 3600
  curl -H "Authorization: Bearer $(SAASFW_ENV=development saasfw dev token --sub alice \\
      --roles reader)" http://127.0.0.1:8000/me

Run it in the service's directory, with the variables the service itself reads: the key is
the one the service uses in development (<data_dir>/<service>/dev-secrets.json, data_dir
'var' by default, relative to the working directory). Refused (exit 78) unless the
environment is development or test.
"""


class _Refused(Exception):
    """The command must not run here (wrong environment, no signing key, bad arguments)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def add_token_parser(commands: Any) -> None:
    """Register ``token`` under the ``saasfw dev`` subcommands."""
    token = commands.add_parser(
        "token",
        help="mint a development access token signed with the service's development key",
        description="Mint an access token the service accepts, for local development.",
        epilog=USAGE_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    token.add_argument("--sub", required=True, help="the subject (principal id), e.g. alice")
    token.add_argument(
        "--roles",
        action="append",
        default=[],
        help="role(s), comma-separated or repeated, e.g. admin or reader,auditor",
    )
    token.add_argument("--scopes", action="append", default=[], help="scope(s), like --roles")
    token.add_argument("--tenant", default=None, help="the tenant claim")
    token.add_argument(
        "--ttl",
        type=float,
        default=None,
        help="lifetime in seconds (default security.tokens.access_ttl)",
    )
    token.add_argument(
        "--service",
        default=None,
        help="service name (default $SAASFW_SERVICE_NAME, else [project].name of ./pyproject.toml)",
    )
    token.add_argument(
        "--settings",
        "--config-dir",
        dest="config_dir",
        default=None,
        metavar="DIR",
        help="settings directory holding <service>/*.yaml (default $SAASFW_CONFIG_DIR, "
        "else ./config)",
    )
    token.add_argument(
        "--model",
        default=None,
        help="settings model as package.module:Class (default $SAASFW_CONFIG_MODEL, else "
        "saasfw.app:ServiceSettings), e.g. demo.settings:Settings",
    )


def _split(values: list[str]) -> list[str]:
    return sorted({part.strip() for value in values for part in value.split(",") if part.strip()})


def _environment(environ: Mapping[str, str]) -> tuple[str, str]:
    """The environment the loader will choose, and where that choice comes from."""
    if "SAASFW_ENV" in environ:
        return environ["SAASFW_ENV"], "SAASFW_ENV"
    env_file = environ.get("SAASFW_ENV_FILE", ".env")
    try:
        lines = Path(env_file).read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for line in lines:
        stripped = line.strip().removeprefix("export ").strip()
        if stripped.startswith("SAASFW_ENV="):
            return stripped.split("=", 1)[1].strip().strip("'\""), f"SAASFW_ENV in {env_file}"
    return "production", "SAASFW_ENV is not set, and saasfw defaults to production"


def _refuse_outside_development(environ: Mapping[str, str]) -> None:
    env, origin = _environment(environ)
    if env in _DEVELOPMENT:
        return
    raise _Refused(
        f"saasfw dev token: refused in the {env!r} environment ({origin}); development "
        "tokens are minted only in development or test: run it as "
        "SAASFW_ENV=development saasfw dev token ...",
        EXIT_REFUSED,
    )


def project_name(directory: Path) -> str | None:
    """``[project].name`` of the ``pyproject.toml`` in ``directory`` (None: none readable)."""
    try:
        text = (directory / "pyproject.toml").read_text("utf-8")
        project = tomllib.loads(text).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    name = project.get("name") if isinstance(project, dict) else None
    return name if isinstance(name, str) and name else None


def _service(given: str | None, environ: Mapping[str, str]) -> str:
    if given:
        return given
    if environ.get("SAASFW_SERVICE_NAME"):
        return environ["SAASFW_SERVICE_NAME"]
    name = project_name(Path.cwd())
    if name is not None:
        return name
    raise _Refused(
        "saasfw dev token: which service? pass --service NAME (or run it in the service's "
        "directory, whose pyproject.toml names it)",
        EXIT_USAGE,
    )


def _model(spec: str | None) -> type[Any]:
    from saasfw.app._settings import ServiceSettings

    if not spec:
        return ServiceSettings
    module_name, _, attribute = spec.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError, ValueError) as exc:
        raise _Refused(
            f"saasfw dev token: cannot import --model {spec!r}: {exc}", EXIT_USAGE
        ) from None
    if not (isinstance(found, type) and issubclass(found, ServiceSettings)):
        raise _Refused(
            f"saasfw dev token: --model {spec!r} is not a ServiceSettings subclass", EXIT_USAGE
        )
    return found


def _issuer(settings: Any, ttl: float | None) -> Any:
    """The service's own token issuer, built from its effective settings."""
    from saasfw.security import TokenIssuer

    tokens, jwt = settings.security.tokens, settings.security.jwt
    if not tokens.enabled:
        raise _Refused(
            "saasfw dev token: security.tokens.enabled is false for this service", EXIT_USAGE
        )
    access_ttl = tokens.access_ttl if ttl is None else ttl
    if not 0 < access_ttl <= 86_400:
        raise _Refused("saasfw dev token: --ttl must be between 1 and 86400 seconds", EXIT_USAGE)
    if tokens.algorithm == "HS256":
        if jwt.hmac_secret is None:
            raise _Refused("saasfw dev token: no HS256 signing key is configured", EXIT_REFUSED)
        key: Any = jwt.hmac_secret.get_secret_value()
    elif tokens.signing_key_file is None:
        raise _Refused(
            f"saasfw dev token: {tokens.algorithm} needs security.tokens.signing_key_file", 2
        )
    else:
        key = tokens.signing_key_file
    refresh_ttl = max(tokens.refresh_ttl, access_ttl + 1)
    return TokenIssuer(
        algorithm=tokens.algorithm,
        signing_key=key,
        issuer=jwt.issuer,
        audience=jwt.audiences[0],
        access_ttl=access_ttl,
        refresh_ttl=refresh_ttl,
        session_ttl=max(30 * 86_400.0, refresh_ttl),
        key_id=tokens.key_id,
    )


async def development_token(
    settings: Any,
    sub: str,
    *,
    roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
    tenant: str | None = None,
    ttl: float | None = None,
) -> str:
    """An access token for ``sub`` signed with the service's own development key.

    What ``saasfw dev token`` prints and the ``saasfw_token`` test fixture returns.
    ``settings`` are the service's loaded settings; anywhere but development and test this
    refuses (``ConfigurationError``): a production key never signs a hand-made token.
    """
    from saasfw.app._effective import runtime_settings
    from saasfw.security import ConfigurationError

    if getattr(settings, "env", None) not in _DEVELOPMENT:
        raise ConfigurationError(
            f"development tokens are refused in the {getattr(settings, 'env', None)!r} "
            "environment; run with SAASFW_ENV=development"
        )
    try:
        issuer = _issuer(runtime_settings(settings), ttl)
    except _Refused as refused:
        raise ConfigurationError(str(refused)) from None
    pair = await issuer.issue(
        sub, tenant=tenant, roles=sorted(set(roles)), scopes=sorted(set(scopes))
    )
    return str(pair.access_token)


def _mint(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    _refuse_outside_development(environ)
    from saasfw.app._effective import runtime_settings
    from saasfw.app._load import load_settings

    layers: dict[str, Any] = {}
    if args.config_dir is not None:
        layers["config_dir"] = args.config_dir
    loaded = load_settings(
        _model(args.model or environ.get("SAASFW_CONFIG_MODEL")),
        service=_service(args.service, environ),
        **layers,
    )
    if loaded.env not in _DEVELOPMENT:  # the loader is the authority; never sign outside dev
        raise _Refused(f"saasfw dev token: refused in the {loaded.env!r} environment", 78)
    issuer = _issuer(runtime_settings(loaded.settings), args.ttl)  # refusals name the flag
    pair = asyncio.run(
        issuer.issue(
            args.sub, tenant=args.tenant, roles=_split(args.roles), scopes=_split(args.scopes)
        )
    )
    return str(pair.access_token)


def run_token(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Print the token on stdout (nothing else there, so ``$(saasfw dev token ...)`` works)."""
    from saasfw.config import ConfigError
    from saasfw.security import SecurityError

    environ = os.environ if environ is None else environ
    try:
        token = _mint(args, environ)
    except _Refused as exc:
        print(str(exc), file=sys.stderr)
        return exc.status
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        if not (args.model or environ.get("SAASFW_CONFIG_MODEL")):
            print(
                "(read with saasfw.app:ServiceSettings; a service with settings of its own "
                "needs --model, e.g. --model billing.settings:Settings)",
                file=sys.stderr,
            )
        return EXIT_REFUSED
    except SecurityError as exc:
        print(f"saasfw dev token: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    print(token)
    return 0
