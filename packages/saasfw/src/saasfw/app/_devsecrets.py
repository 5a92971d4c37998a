"""Development secrets: random keys kept in the service's data directory, never in production.

A fresh clone must start with no configuration, yet every key (token signing, API-key
pepper, audit chain, checkpoint signing, field encryption) must be real and random. In
``development`` and ``test`` the missing ones are generated once and kept in
``<data_dir>/<service>/dev-secrets.json`` (mode 0600), so tokens, API keys and the audit
chain survive a restart. In ``staging`` and ``production`` nothing is generated: a missing
key is a configuration error.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

__all__ = ["DEV_ENVIRONMENTS", "DevSecrets"]

DEV_ENVIRONMENTS = frozenset({"development", "test"})

_NAMES = (
    "jwt_secret",
    "api_key_pepper",
    "audit_chain_key",
    "audit_checkpoint_key",
    "audit_encryption_key",
    "messaging_signing_key",
)


class DevSecrets:
    """Random 32-byte keys (base64) by name, created on first use and kept on disk."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "dev-secrets.json"
        self._values: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"DevSecrets({str(self.path)!r})"

    def _load(self) -> dict[str, str]:
        if self._values is not None:
            return self._values
        values: dict[str, str] = {}
        if self.path.exists():
            loaded = json.loads(self.path.read_text("utf-8"))
            if isinstance(loaded, dict):
                values = {str(k): str(v) for k, v in loaded.items()}
        missing = [name for name in _NAMES if name not in values]
        if missing:
            for name in missing:
                values[name] = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
            self._write(values)
        self._values = values
        return values

    def _write(self, values: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(values, handle)
        os.replace(temporary, self.path)

    def get(self, name: str) -> str:
        """The base64 key called ``name`` (one of the known names)."""
        if name not in _NAMES:
            raise KeyError(name)
        return self._load()[name]
