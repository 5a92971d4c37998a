"""Load a service's settings with saasfw.config (every layer, strict, secret-safe)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from saasfw.app._settings import ServiceSettings
from saasfw.config import LoadedSettings, resolve_settings

__all__ = ["load_settings"]

S = TypeVar("S", bound=ServiceSettings)


def _names_env(environ: Mapping[str, str], layers: dict[str, Any]) -> bool:
    """Whether the environment or the ``.env`` file chooses ``SAASFW_ENV`` already."""
    if "SAASFW_ENV" in environ:
        return True
    env_file = layers.get("env_file", environ.get("SAASFW_ENV_FILE", ".env"))
    if env_file is None:
        return False
    try:
        lines = Path(env_file).read_text("utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False  # saasfw.config reports an unreadable file itself
    return any(line.strip().removeprefix("export ").startswith("SAASFW_ENV=") for line in lines)


def load_settings(
    model: type[S],
    *,
    service: str,
    env: str | None = None,
    default_env: str | None = None,
    **layers: Any,
) -> LoadedSettings[S]:
    """Load ``model`` for ``service`` through every saasfw.config layer.

    The result's ``settings.service`` and ``settings.env`` are the service and environment
    the settings were loaded for, so every package sees the same identity.

    Args:
        model: the service's settings model (a :class:`ServiceSettings` subclass).
        service: the service name; selects ``config/<service>/``.
        env: the environment; default ``$SAASFW_ENV`` (saasfw.config then falls back to
            ``production``, failing closed).
        default_env: the environment when neither ``env``, ``$SAASFW_ENV`` nor the ``.env``
            file names one (a local example passes ``development``; a deployable service
            should not).
        layers: ``config_dir``, ``env_file``, ``secrets_dir``, ``environ``: see
            :func:`saasfw.config.resolve_settings`.

    Raises:
        saasfw.config.ConfigError: every problem of every layer, secrets never included.
    """
    environ = layers.get("environ")
    environ = os.environ if environ is None else environ
    if env is None and default_env is not None and not _names_env(environ, layers):
        env = default_env
    loaded = resolve_settings(model, service=service, env=env, **layers)
    settings = loaded.settings.model_copy(update={"service": service, "env": loaded.env})
    return dataclasses.replace(loaded, settings=settings)
