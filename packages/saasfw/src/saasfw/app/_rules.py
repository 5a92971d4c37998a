"""The production rules of a composed service: saasfw.config's registry, every package's checks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from saasfw.app._db import db_service_name
from saasfw.app._defaults import is_default
from saasfw.app._settings import ServiceSettings
from saasfw.config import (
    ProductionRule,
    ProductionRules,
    RuleContext,
    Violation,
    database_isolation_rule,
    debug_rule,
    weak_secrets_rule,
)

__all__ = ["production_rules"]


def _database_isolation() -> ProductionRule:
    """saasfw.config's isolation rule, applied to the database the service will really use.

    saasfw.db defaults the PostgreSQL schema to the service name and the SQLite file to
    ``<data_dir>/<service>/<service>.db``; the rule must judge those effective values.
    """
    inner = database_isolation_rule(url_path="db.url", schema_path="db.schema_name")

    def check(settings: Any, context: RuleContext) -> Iterator[str | Violation]:
        if not isinstance(settings, ServiceSettings):
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


def _single_process_state(settings: Any, context: RuleContext) -> Iterator[str]:
    if isinstance(settings, ServiceSettings):
        yield from _memory_state_problems(settings)


def _memory_state_problems(settings: ServiceSettings) -> Iterable[str]:
    # Filled in by the security wiring (rate limits, revocation) once those sections exist.
    del settings
    return ()


def production_rules(extra: Iterable[ProductionRule] = ()) -> ProductionRules:
    """Every rule a composed service is checked against before it binds a port.

    Secret strength and debug (saasfw.config), database isolation on the effective database,
    plus ``extra`` (the service's own rules).
    """
    rules = ProductionRules([weak_secrets_rule(), debug_rule(), _database_isolation()])
    rules.add(
        ProductionRule(
            "process.memory_state",
            _single_process_state,
            description="state kept in process memory must not be split across workers",
        )
    )
    for rule in extra:
        rules.add(rule)
    return rules
