"""The production rules of a composed service: saasfw.config's registry, every package's checks.

Each package exposes its checks as plain callables; here they become named
``ProductionRule``s judged on the settings the service will really run with (derived
defaults applied; in staging and production no key is ever generated, so a missing key is
a violation, not a surprise at the first request).
"""

from __future__ import annotations

from collections.abc import Iterable

from saasfw.app._audit import audit_rules
from saasfw.app._auth import security_rules
from saasfw.app._db import database_rules
from saasfw.app._fleet import fleet_rules
from saasfw.app._messaging import messaging_rules
from saasfw.app._observability import observability_rules
from saasfw.config import ProductionRule, ProductionRules, debug_rule, weak_secrets_rule

__all__ = ["production_rules"]


def production_rules(extra: Iterable[ProductionRule] = ()) -> ProductionRules:
    """Every rule a composed service is checked against before it binds a port.

    From saasfw.config: secret strength and debug off. Then each concern's own, from its
    wiring module: the database (isolation from other services, safe settings),
    observability (JSON, redacted logs), security (authentication, token signing), audit
    (chain key, checkpoints, keys, a sink), messaging (signed events, a real broker) and
    the fleet (per-process state where several instances may run, TLS). Plus ``extra``
    (the service's own rules).
    """
    rules = ProductionRules([weak_secrets_rule(), debug_rule()])
    for rule in (
        *database_rules(),
        *observability_rules(),
        *security_rules(),
        *audit_rules(),
        *messaging_rules(),
        *fleet_rules(),
        *extra,
    ):
        rules.add(rule)
    return rules
