"""Production rules for the deployed shape: shared state in a fleet, audit on, TLS verified.

A service is a fleet from its first deploy. With ``deployment.instances`` unset or above 1,
production refuses every store that lives in one process (memory rate limits, memory
token revocation and sessions, a local subject key store) and SQLite, naming the setting
to change. A single-instance deployment declares itself (``deployment.instances=1``); even
then token revocation must survive a restart, so it may not live in memory.

Every violation names the setting an operator sets (``redis_url``, ``db.url``...), so the
report can say where its value came from.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from saasfw.app._effective import effective_for
from saasfw.app._settings import ServiceSettings
from saasfw.config import ProductionRule, RuleContext, Violation
from saasfw.core import is_development

__all__ = ["fleet_rules", "instance_count", "revocation_backend"]

_NO_VERIFY_REDIS = {"none", "optional", "cert_none", "cert_optional"}
# libpq's modes that encrypt without checking the server's certificate.
_NO_VERIFY_PG = {"allow", "prefer", "require", "no-verify"}


def instance_count(settings: ServiceSettings) -> int | None:
    """How many instances may run at once; None when unknown (production assumes a fleet)."""
    if settings.deployment.instances is not None:
        return settings.deployment.instances
    return settings.http.processes if settings.http.processes > 1 else None


def revocation_backend(settings: ServiceSettings) -> str:
    """Where token revocation lives: ``redis``, ``database`` or ``memory``."""
    if settings.security.redis_url is not None:
        return "redis"
    if settings.components.database:
        return "database"
    return "memory"


def _fleet(settings: ServiceSettings) -> str | None:
    """Why this deployment counts as a fleet, or None for a declared single instance."""
    count = instance_count(settings)
    if count == 1 or (count is None and is_development(settings.env)):
        # A laptop or a test run is one instance unless it says otherwise.
        return None
    if count is None:
        return "deployment.instances is unset, so production assumes several instances"
    return f"up to {count} instances may run at once (deployment.instances)"


def _shared_state(settings: ServiceSettings) -> Iterator[Violation]:
    fleet = _fleet(settings)
    components = settings.components
    security = settings.security
    if fleet is not None and components.database and settings.db.backend() == "sqlite":
        yield Violation(
            "fleet",
            f"the database is SQLite, one file per instance, and {fleet}: set db.url to "
            "PostgreSQL, or declare deployment.instances=1",
            "db.url",
        )
    limits = security.rate_limit
    memory_limits = limits.enabled and limits.uses_memory_storage
    if fleet is not None and components.rate_limiting and memory_limits:
        yield Violation(
            "fleet",
            f"rate limits are counted in memory, per instance, and {fleet}: every limit "
            "would be multiplied; set redis_url, or security.rate_limit.storage_url to a "
            "redis:// or postgresql:// URL (the default with a PostgreSQL db.url)",
            "security.rate_limit.storage_url",
        )
    if components.authentication and revocation_backend(settings) == "memory":
        # Even one instance: a restart would bring logged-out tokens back.
        yield Violation(
            "fleet",
            "token revocation and refresh-token families would live in memory: a restart "
            "brings logged-out sessions back and other instances never see a logout; "
            "switch components.database on (the database store) or set redis_url",
            "components.database",
        )
    if fleet is not None and security.sessions.enabled and security.redis_url is None:
        yield Violation(
            "fleet",
            f"sessions would be kept in memory, per instance, and {fleet}: set redis_url",
            "redis_url",
        )
    encryption = settings.audit.encryption
    if fleet is not None and settings.audit.enabled and encryption.subject_keystore is not None:
        yield Violation(
            "fleet",
            f"the subject key store is a local file per instance and {fleet}: an erasure on "
            "one instance would leave the subject readable on the others",
            "audit.encryption.subject_keystore",
        )


def _audit_on(settings: ServiceSettings) -> Iterator[Violation]:
    if settings.overrides.allow_audit_off:
        return
    if not settings.components.audit:
        yield Violation(
            "audit.required",
            "audit is switched off; production keeps an audit trail (to run without one "
            "anyway, set overrides.allow_audit_off=true)",
            "components.audit",
        )
    elif not settings.audit.enabled:
        yield Violation(
            "audit.required",
            "audit is switched off; production keeps an audit trail (to run without one "
            "anyway, set overrides.allow_audit_off=true)",
            "audit.enabled",
        )


def _audit_chained(settings: ServiceSettings) -> Iterator[Violation]:
    audit = settings.audit
    if not (settings.components.audit and audit.enabled):
        return
    if audit.file is None and (audit.sql is not None or settings.components.audit_in_database):
        yield Violation(
            "audit.chain",
            "the audit trail goes only to the database: its rows are hash-chained per "
            "producer (saasfw-audit verify --sql), but without signed checkpoints a cut-off "
            "tail or a lost producer cannot be told from a quiet one; add audit.file (the "
            "chained log with signed checkpoints)",
            "audit.file",
        )


def _query(url: str) -> dict[str, str]:
    return {k.lower(): v[-1].lower() for k, v in parse_qs(urlsplit(url).query).items()}


def _redis_urls(settings: ServiceSettings) -> Iterator[tuple[str, str]]:
    """Each distinct Redis URL once, under the first setting that holds it.

    ``redis_url`` fills the security section's URLs when they are unset, so one operator
    setting would otherwise be reported three times, twice as a "model default".
    """
    seen: set[str] = set()
    for path, secret in (
        ("redis_url", settings.redis_url),
        ("security.redis_url", settings.security.redis_url),
        ("security.rate_limit.storage_url", settings.security.rate_limit.storage_url),
    ):
        url = secret.get_secret_value() if secret is not None else None
        if url is not None and url not in seen:
            seen.add(url)
            yield path, url


def _tls(settings: ServiceSettings, *, verification: bool) -> Iterator[Violation]:
    """TLS verification switched off (``verification``), or plaintext connections."""
    rule = "tls.verification" if verification else "tls.plaintext"
    for path, url in _redis_urls(settings):
        scheme = urlsplit(url).scheme
        query = _query(url)
        if verification and scheme == "rediss":
            if query.get("ssl_cert_reqs") in _NO_VERIFY_REDIS or query.get(
                "ssl_check_hostname"
            ) in {"false", "0", "no"}:
                yield Violation(
                    rule,
                    "TLS certificate verification is switched off for Redis "
                    "(ssl_cert_reqs/ssl_check_hostname in the URL); drop those parameters",
                    path,
                )
        elif not verification and scheme == "redis":
            yield Violation(rule, "Redis is reached over plaintext (redis://)", path)
    db = settings.db
    if settings.components.database and db.url is not None and db.backend() == "postgresql":
        query = _query(db.url.get_secret_value())
        mode = query.get("sslmode", query.get("ssl"))
        if verification and mode in _NO_VERIFY_PG:
            yield Violation(
                rule,
                f"the database connection encrypts without verifying the server (sslmode="
                f"{mode}); use sslmode=verify-full with the server's CA",
                "db.url",
            )
        elif not verification and mode in (None, "disable", "false"):
            yield Violation(rule, "the database is reached without verified TLS", "db.url")
    if not verification:
        for name, client in settings.clients.items():
            if client.base_url.startswith("http://"):
                yield Violation(
                    rule,
                    "this downstream service is called over plain HTTP",
                    f"clients.{name}.base_url",
                )


def _check(body: Any) -> Any:
    def check(settings: Any, context: RuleContext) -> Iterator[Violation]:
        effective = effective_for(settings, context)
        if effective is not None:
            yield from body(effective)

    return check


def _plaintext(settings: Any, context: RuleContext) -> Iterator[Violation]:
    if context.env != "production":
        return
    effective = effective_for(settings, context)
    if effective is not None:
        yield from _tls(effective, verification=False)


def fleet_rules() -> list[ProductionRule]:
    """The deployed-shape rules, fatal in production (plaintext is a production warning)."""
    return [
        ProductionRule(
            "fleet",
            _check(_shared_state),
            description="no per-process state (memory rate limits, revocation, sessions, "
            "local subject keys) or SQLite where several instances may run; revocation "
            "never in memory",
        ),
        ProductionRule(
            "audit.required",
            _check(_audit_on),
            description="audit is on, unless overrides.allow_audit_off says otherwise",
        ),
        ProductionRule(
            "audit.chain",
            _check(_audit_chained),
            fatal_in=frozenset(),
            description="an audit trail kept only in the database (chained, but without "
            "signed checkpoints) is a production warning",
        ),
        ProductionRule(
            "tls.verification",
            _check(lambda s: _tls(s, verification=True)),
            description="TLS certificate verification is never switched off (Redis, the database)",
        ),
        ProductionRule(
            "tls.plaintext",
            _plaintext,
            fatal_in=frozenset(),
            description="plaintext connections to Redis, the database and downstream "
            "services are allowed, with a production warning",
        ),
    ]
