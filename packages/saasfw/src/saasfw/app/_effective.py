"""The settings a service really runs with: derived defaults and development keys filled in.

The production rules judge the settings as loaded, so a production deployment missing a
key is refused; only in development and test are the missing keys generated
(see :class:`DevSecrets`).
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from saasfw.app._defaults import is_default
from saasfw.app._devsecrets import DEV_ENVIRONMENTS, DevSecrets
from saasfw.app._settings import ServiceSettings
from saasfw.audit import AuditSettings, CheckpointSettings, FileSinkSettings, SqlSinkSettings
from saasfw.config import FrozenDict, RuleContext
from saasfw.core import ENVIRONMENTS
from saasfw.db import DbSettings
from saasfw.messaging import MessagingSettings
from saasfw.security import SecuritySettings

__all__ = ["effective_for", "effective_settings", "loaded_for", "runtime_settings"]


def _database_sink(settings: ServiceSettings, db: DbSettings) -> SqlSinkSettings:
    """The audit SQL sink on the service's own database (and schema)."""
    service = settings.service.replace("-", "_")
    url = db.sqlalchemy_url(service).render_as_string(hide_password=False)
    schema = (db.schema_name or service) if db.backend() == "postgresql" else None
    return SqlSinkSettings(url=SecretStr(url), schema_name=schema)


def _audit(settings: ServiceSettings, dev: DevSecrets | None, db: DbSettings) -> AuditSettings:
    audit = settings.audit
    update: dict[str, Any] = {}
    if settings.components.audit_in_database and audit.sql is None:
        update["sql"] = _database_sink(settings, db)
    if dev is not None and audit.enabled:
        directory = settings.state_dir() / "audit"
        if audit.file is None and audit.syslog is None and not audit.console:
            # The file anchors the hash chain; a database sink alone is not tamper-evident.
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
                    "keys": FrozenDict({"dev": SecretStr(dev.get("audit_encryption_key"))}),
                    "active_key_id": "dev",
                }
            )
    return audit.model_copy(update=update) if update else audit


def _shared_database(settings: ServiceSettings) -> SecretStr | None:
    """The database's URL when the component is on and it is PostgreSQL (every instance's)."""
    db = settings.db
    if settings.components.database and db.url is not None and db.backend() == "postgresql":
        return db.url
    return None


def _security(settings: ServiceSettings, dev: DevSecrets | None) -> SecuritySettings:
    security = settings.security
    update: dict[str, Any] = {}
    if settings.redis_url is not None:
        if security.redis_url is None:
            update["redis_url"] = settings.redis_url
        limits = security.rate_limit
        if limits.uses_memory_storage:
            update["rate_limit"] = limits.model_copy(update={"storage_url": settings.redis_url})
    elif (url := _shared_database(settings)) and security.rate_limit.uses_memory_storage:
        # No Redis: a fleet shares its limits in the service's own PostgreSQL database.
        schema = settings.db.schema_name or settings.service.replace("-", "_")
        update["rate_limit"] = security.rate_limit.model_copy(
            update={"storage_url": url, "postgres_schema": schema}
        )
    if is_default(security.rate_limit, "key_prefix"):
        limits = update.get("rate_limit", security.rate_limit)
        prefix = f"{settings.redis_prefix or settings.service}:ratelimit"[:64]
        update["rate_limit"] = limits.model_copy(update={"key_prefix": prefix})
    jwt = security.jwt
    if settings.security.tokens.enabled:
        jwt_update: dict[str, Any] = {}
        if jwt.issuer is None:
            jwt_update["issuer"] = settings.service
        if not jwt.audiences:
            jwt_update["audiences"] = (settings.service,)
        if is_default(jwt, "algorithms"):
            jwt_update["algorithms"] = (settings.security.tokens.algorithm,)
        no_key = jwt.hmac_secret is None and not jwt.public_key_files and jwt.jwks_url is None
        if dev is not None and no_key and settings.security.tokens.algorithm == "HS256":
            jwt_update["hmac_secret"] = SecretStr(dev.get("jwt_secret"))
        if jwt_update:
            update["jwt"] = jwt.model_copy(update=jwt_update)
    keys = security.api_keys
    if dev is not None and not keys.peppers:
        update["api_keys"] = keys.model_copy(
            update={
                "peppers": FrozenDict({"dev": SecretStr(dev.get("api_key_pepper"))}),
                "current_pepper": "dev",
            }
        )
    return security.model_copy(update=update) if update else security


def _messaging(settings: ServiceSettings, dev: DevSecrets | None) -> MessagingSettings:
    """The service's own source, and in development/test a generated signing key.

    A service verifies its own events with its own key (it may consume them too).
    """
    messaging = settings.messaging
    update: dict[str, Any] = {}
    if is_default(messaging, "source"):
        update["source"] = f"/services/{settings.service}"
    if dev is not None and settings.components.messaging and messaging.signing_key is None:
        key = SecretStr(dev.get("messaging_signing_key"))
        source = update.get("source", messaging.source)
        verification = {k: dict(v) for k, v in messaging.verification_keys.items()}
        verification.setdefault(source, {})["dev"] = key
        frozen: FrozenDict[str, FrozenDict[str, SecretStr]] = FrozenDict(
            {k: FrozenDict(v) for k, v in verification.items()}
        )
        update.update({"signing_key_id": "dev", "signing_key": key, "verification_keys": frozen})
    return messaging.model_copy(update=update) if update else messaging


def runtime_settings(settings: ServiceSettings) -> ServiceSettings:
    """``settings`` with per-service defaults and, in development/test, generated keys.

    - the database, audit log and development keys live under ``data_dir``;
    - ``redis_url`` feeds rate limits, token revocation and sessions unless they name
      their own storage, with keys under ``redis_prefix`` (default: the service name);
      without it, rate limits live in the service's PostgreSQL database when it has one;
    - a token-issuing service verifies its own tokens: issuer and audience default to the
      service name, and in development/test an HS256 secret is generated;
    - in development/test, API-key peppers and the audit keys are generated too.
    """
    dev = DevSecrets(settings.state_dir()) if settings.env in DEV_ENVIRONMENTS else None
    db = settings.db
    if is_default(db, "data_dir"):
        db = db.model_copy(update={"data_dir": settings.data_dir})
    update: dict[str, Any] = {
        "db": db,
        "audit": _audit(settings, dev, db),
        "security": _security(settings, dev),
        "messaging": _messaging(settings, dev),
    }
    return settings.model_copy(update=update)


def loaded_for(settings: Any, context: RuleContext) -> ServiceSettings | None:
    """The settings with the service and environment a production rule checks them for.

    ``saasfw-config check`` loads the model without ``saasfw.app.load_settings``, so the
    model's own ``service``/``env`` fields may still hold their defaults. None when the
    settings are not a ``ServiceSettings`` (the rule then has nothing to judge).
    """
    if not isinstance(settings, ServiceSettings):
        return None
    update: dict[str, Any] = {"service": context.service}
    if context.env in ENVIRONMENTS:
        update["env"] = context.env
    return settings.model_copy(update=update)


def effective_for(settings: Any, context: RuleContext) -> ServiceSettings | None:
    """:func:`loaded_for`, then :func:`runtime_settings`: what the service will run with."""
    loaded = loaded_for(settings, context)
    return runtime_settings(loaded) if loaded is not None else None


# The pre-0.3 name, which meant something else in saasfw.config (a masked report of the
# loaded settings, ``saasfw.config.effective_settings``); kept for code that imported it.
effective_settings = runtime_settings
