"""The masked effective-configuration report behind ``saasfw-config show``."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from saasfw.config._errors import MASK, Redactor
from saasfw.config._loader import LoadedSettings
from saasfw.config._rules import _secret_redactor


def _mask_url(text: str) -> str:
    if "://" not in text:
        return text
    try:
        password = urlsplit(text).password
    except ValueError:
        return text
    if not password:
        return text
    return text.replace(f":{password}@", f":{MASK}@", 1)


def _scrub(value: Any, redact: Redactor) -> Any:
    if isinstance(value, str):
        return redact(_mask_url(value))
    if isinstance(value, dict):
        return {key: _scrub(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item, redact) for item in value]
    return value


def effective_settings(loaded: LoadedSettings[Any]) -> dict[str, Any]:
    """The settings as plain data with every secret masked, plus the winning source per field.

    Secret fields become ``**********``; so does the password inside any URL and any copy of
    a secret value that appears in a non-secret field.
    """
    dumped = loaded.settings.model_dump(mode="json", by_alias=True)
    redact = _secret_redactor(loaded.settings)
    return {
        "service": loaded.service,
        "env": loaded.env,
        "config_dir": None if loaded.config_dir is None else str(loaded.config_dir),
        "settings": _scrub(dumped, redact),
        "sources": dict(loaded.sources),
    }


def render_effective_settings(
    loaded: LoadedSettings[Any], output: Literal["yaml", "json"] = "yaml"
) -> str:
    """``effective_settings`` as YAML (default) or JSON text."""
    data = effective_settings(loaded)
    if output == "json":
        import json

        return json.dumps(data, indent=2, sort_keys=False) + "\n"
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
