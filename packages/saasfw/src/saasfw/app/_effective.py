"""The settings a service really runs with: derived defaults and development keys filled in.

The production rules judge the settings as loaded, so a production deployment missing a
key is refused; only in development and test are the missing keys generated
(see :class:`DevSecrets`).
"""

from __future__ import annotations

import socket
from typing import Any

from pydantic import SecretStr

from saasfw.app._defaults import is_default
from saasfw.app._devsecrets import DEV_ENVIRONMENTS, DevSecrets
from saasfw.app._settings import ServiceSettings
from saasfw.audit import AuditSettings, CheckpointSettings, FileSinkSettings

__all__ = ["effective_settings"]


def _audit(settings: ServiceSettings, dev: DevSecrets | None) -> AuditSettings:
    audit = settings.audit
    update: dict[str, Any] = {}
    if audit.producer_id is None:
        update["producer_id"] = f"{settings.service}@{socket.gethostname()}"[:128]
    if dev is not None and audit.enabled:
        directory = settings.state_dir() / "audit"
        if audit.file is None and audit.syslog is None and not audit.console:
            update["file"] = FileSinkSettings(path=directory / "audit.jsonl")
        if audit.integrity:
            if audit.chain_key is None and audit.chain_key_file is None:
                update["chain_key"] = SecretStr(dev.get("audit_chain_key"))
            if audit.checkpoints is None:
                update["checkpoints"] = CheckpointSettings(
                    path=directory / "checkpoints.jsonl",
                    signing_key=SecretStr(dev.get("audit_checkpoint_key")),
                )
        encryption = audit.encryption
        if encryption.fields and not (encryption.keys or encryption.key_files):
            update["encryption"] = encryption.model_copy(
                update={
                    "keys": {"dev": SecretStr(dev.get("audit_encryption_key"))},
                    "active_key_id": "dev",
                }
            )
    return audit.model_copy(update=update) if update else audit


def effective_settings(settings: ServiceSettings) -> ServiceSettings:
    """``settings`` with per-service defaults and, in development/test, generated keys."""
    dev = DevSecrets(settings.state_dir()) if settings.env in DEV_ENVIRONMENTS else None
    update: dict[str, Any] = {"audit": _audit(settings, dev)}
    if is_default(settings.db, "data_dir"):
        update["db"] = settings.db.model_copy(update={"data_dir": settings.data_dir})
    auth = settings.auth
    if dev is not None:
        jwt = auth.jwt
        if jwt.algorithm == "HS256" and jwt.secret is None:
            jwt = jwt.model_copy(update={"secret": SecretStr(dev.get("jwt_secret"))})
        keys = auth.api_keys
        if not keys.peppers:
            keys = keys.model_copy(
                update={
                    "peppers": {"dev": SecretStr(dev.get("api_key_pepper"))},
                    "current_pepper": "dev",
                }
            )
        update["auth"] = auth.model_copy(update={"jwt": jwt, "api_keys": keys})
    return settings.model_copy(update=update)
