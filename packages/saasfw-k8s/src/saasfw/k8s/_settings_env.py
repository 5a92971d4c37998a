"""Turn effective (non-secret) settings into ConfigMap environment variables, refusing secrets."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from saasfw.k8s._errors import RenderError

ENV_PREFIX = "SAASFW_"
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# Key segments that name a secret: such values belong in a Secret referenced by name.
_SECRET_KEY = re.compile(
    r"(^|_)(password|passwd|secret|secrets|token|private_key|secret_key|api_key|apikey|"
    r"credential|credentials|passphrase)($|_)",
    re.IGNORECASE,
)
_MASKED = re.compile(r"\*{3,}")
_URL_PASSWORD = re.compile(r"://[^/@\s:]*:[^/@\s]+@")


def settings_to_env(settings: Mapping[str, Any], *, prefix: str = ENV_PREFIX) -> dict[str, str]:
    """Flatten nested settings to ``SAASFW_SECTION__KEY`` variables (fail closed on secrets).

    Keys that already are environment variable names starting with ``prefix`` are kept
    as they are. ``None`` values are left out (unset), booleans become ``true``/``false``,
    lists become JSON.

    Raises:
        RenderError: a key names a secret, a value is masked (``**********``, as a
            masked effective-config report shows secrets), or a URL carries a password.
    """
    env: dict[str, str] = {}
    for key, value in settings.items():
        literal = bool(_ENV_NAME.match(key)) and key.startswith(prefix)
        _flatten([str(key)], value, env, prefix=prefix, literal=literal)
    return dict(sorted(env.items()))


def _flatten(
    path: list[str], value: Any, env: dict[str, str], *, prefix: str, literal: bool
) -> None:
    dotted = ".".join(path)
    last = path[-1]
    if not _KEY.match(last):
        raise RenderError(f"setting key {dotted!r} is not a valid name", where=dotted)
    if _SECRET_KEY.search(last):
        raise RenderError(
            f"setting {dotted!r} looks like a secret: a ConfigMap must not carry it; put it in "
            "a Kubernetes Secret and pass the Secret's name with --secret",
            where=dotted,
        )
    if isinstance(value, Mapping):
        for sub_key, sub_value in value.items():
            _flatten([*path, str(sub_key)], sub_value, env, prefix=prefix, literal=literal)
        return
    if value is None:
        return
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float | str):
        text = str(value)
    elif isinstance(value, list | tuple):
        text = json.dumps(list(value), separators=(",", ":"))
    else:
        raise RenderError(
            f"setting {dotted!r} has a value of type {type(value).__name__}, expected a "
            "string, number, boolean, list or mapping",
            where=dotted,
        )
    if _MASKED.search(text):
        raise RenderError(
            f"setting {dotted!r} is masked, so it is a secret: reference its Secret with "
            "--secret instead of rendering it into the ConfigMap",
            where=dotted,
        )
    if _URL_PASSWORD.search(text):
        raise RenderError(
            f"setting {dotted!r} is a URL with a password: move it to a Secret (--secret)",
            where=dotted,
        )
    segments = [s.replace("-", "_").upper() for s in path]
    name = "__".join(segments) if literal else prefix + "__".join(segments)
    if not _ENV_NAME.match(name):
        raise RenderError(f"setting {dotted!r} gives an invalid variable {name!r}", where=dotted)
    env[name] = text
