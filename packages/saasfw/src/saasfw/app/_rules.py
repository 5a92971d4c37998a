"""The production rules of a composed service: saasfw.config's registry, every package's checks.

Each package exposes its checks as plain callables; here they become named
``ProductionRule``s judged on the settings the service will really run with (derived
defaults applied; in staging and production no key is ever generated, so a missing key is
a violation, not a surprise at the first request).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from saasfw.app._db import db_service_name
from saasfw.app._defaults import is_default
from saasfw.app._effective import effective_for, loaded_for
from saasfw.app._fleet import fleet_rules
from saasfw.audit import audit_production_problems
from saasfw.config import (
    ProductionRule,
    ProductionRules,
    RuleContext,
    Violation,
    database_isolation_rule,
    debug_rule,
    weak_secrets_rule,
)
from saasfw.security import security_production_problems

__all__ = ["production_rules"]


def _database_isolation() -> ProductionRule:
    """saasfw.config's isolation rule, applied to the database the service will really use.

    saasfw.db defaults the PostgreSQL schema to the service name and the SQLite file to
    ``<data_dir>/<service>/<service>.db``; the rule must judge those effective values.
    """
    inner = database_isolation_rule(url_path="db.url", schema_path="db.schema_name")

    def check(raw: Any, context: RuleContext) -> Iterator[str | Violation]:
        settings = loaded_for(raw, context)
        if settings is None:
            return
        db = settings.db
        service = db_service_name(settings.service)
        if db.url is None:
            root = settings.data_dir if is_default(db, "data_dir") else db.data_dir
            path = Path(root) / service / f"{service}.db"
            view = {"db": {"url": f"sqlite:///{path.resolve()}", "schema_name": None}}
        else:
            schema = (db.schema_name or service) if db.backend() == "postgresql" else None
            view = {"db": {"url": db.url.get_secret_value(), "schema_name": schema}}
        yield from inner.check(view, context)

    return ProductionRule("db.isolation", check, inner.fatal_in, inner.description)


_LEADING_SETTING = re.compile(r"^(security(?:\.[a-z_]+)+)\b")


def _named_setting(message: str) -> str:
    """The setting a package's plain message starts with, so the report can give its source.

    saasfw-security phrases its findings as ``security.jwt.jwks_url must use https://``.
    """
    match = _LEADING_SETTING.match(message)
    return match.group(1) if match else "security"


def _security(settings: Any, context: RuleContext) -> Iterator[str | Violation]:
    effective = effective_for(settings, context)
    if effective is None or not effective.components.authentication:
        return
    # Per-process state is judged by the fleet rule, with the deployment's instance count.
    for message in security_production_problems(effective.security, workers=1):
        yield Violation("security", message, _named_setting(message))
    tokens = effective.tokens
    jwt = effective.security.jwt
    if tokens.enabled and tokens.algorithm == "HS256" and jwt.hmac_secret is None:
        yield Violation(
            "security",
            "tokens are issued with HS256 but no signing secret is set "
            "(SAASFW_SECURITY__JWT__HMAC_SECRET, or a secret file)",
            "security.jwt.hmac_secret",
        )
    if tokens.enabled and tokens.algorithm != "HS256" and tokens.signing_key_file is None:
        yield Violation(
            "security",
            f"tokens are issued with {tokens.algorithm} but no private key file is set",
            "tokens.signing_key_file",
        )


def _audit(settings: Any, context: RuleContext) -> Iterator[str | Violation]:
    effective = effective_for(settings, context)
    if effective is None or not effective.components.audit or not effective.audit.enabled:
        return
    audit = effective.audit
    yield from audit_production_problems(audit)
    if audit.file is None and audit.sql is None and audit.syslog is None and not audit.console:
        yield Violation(
            "audit",
            "audit is enabled but has no sink: set audit.file.path (with the chain key and "
            "checkpoints), audit.sql or audit.syslog",
            "audit.file",
        )


def production_rules(extra: Iterable[ProductionRule] = ()) -> ProductionRules:
    """Every rule a composed service is checked against before it binds a port.

    From saasfw.config: secret strength, debug off, database isolation (on the effective
    database). From saasfw.security: single-process state with several processes, JWT and
    session safety, the token signing key. From saasfw.audit: chain key, checkpoints,
    encryption keys, a sink. Plus ``extra`` (the service's own rules).
    """
    rules = ProductionRules([weak_secrets_rule(), debug_rule(), _database_isolation()])
    rules.add(
        ProductionRule(
            "security",
            _security,
            description="authentication, token signing and rate-limit storage are safe",
        )
    )
    rules.add(
        ProductionRule(
            "audit",
            _audit,
            description="the audit trail has a sink, a chain key, checkpoints and keys",
        )
    )
    for rule in fleet_rules():
        rules.add(rule)
    for rule in extra:
        rules.add(rule)
    return rules
