"""The production-check type: how a package states a rule its settings must meet.

A package exposes its rules as :class:`ProductionRule` values (a name and a check); the
application registers them with saasfw-config's registry, which runs them at start-up and
refuses to start where a rule is fatal. The types live here so that a package can declare
its rules without importing saasfw-config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PRODUCTION_ONLY", "ProductionRule", "RuleCheck", "RuleContext", "Violation"]

PRODUCTION_ONLY: frozenset[str] = frozenset({"production"})


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a rule may look at besides the settings object."""

    service: str
    env: str
    config_dir: Path | None = None
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Violation:
    """One unsafe setting: which rule, which setting (dotted path, may be empty), and why.

    ``fatal`` is filled in by the registry from the rule's ``fatal_in`` and the environment;
    a check does not need to set it.
    """

    rule: str
    message: str
    path: str = ""
    fatal: bool = True

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"[{self.rule}] {where}{self.message}"


RuleCheck = Callable[[Any, RuleContext], Iterable["str | Violation"]]


@dataclass(frozen=True, slots=True)
class ProductionRule:
    """A named safety check over the settings.

    ``check(settings, context)`` returns (or yields) violations: plain strings or
    ``Violation`` objects. An empty result means the rule holds. ``fatal_in`` lists the
    environments where a violation stops start-up; elsewhere it is a warning.
    """

    name: str
    check: RuleCheck
    fatal_in: frozenset[str] = PRODUCTION_ONLY
    description: str = ""
