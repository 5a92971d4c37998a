"""The package's one exception family and the problems it carries."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MASK = "**********"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a configuration, located precisely and never carrying a secret.

    Attributes:
        path: dotted path of the setting (``db.port``), empty for a whole-file problem.
        source: where the offending value came from: ``config/production.yaml:12``,
            ``env SAASFW_DB__PORT``, ``.env:3 (SAASFW_DB__PORT)``, ...
        message: what is wrong and, where it helps, what to do.
        kind: a stable machine-readable category (``unknown_key``, ``duplicate_key``,
            ``unsafe_tag``, ``unset_variable``, ``file``, ``yaml``, ``invalid``, ...).
    """

    path: str
    source: str
    message: str
    kind: str = "invalid"

    def __str__(self) -> str:
        where = self.path or "<file>"
        return f"{where} ({self.source}): {self.message}"


class ConfigError(Exception):
    """A configuration could not be loaded or is unsafe; ``problems`` lists every reason."""

    def __init__(self, problems: Iterable[Problem], summary: str = "invalid configuration"):
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.summary = summary
        super().__init__(self.report())

    def __reduce__(self) -> tuple[type[ConfigError], tuple[tuple[Problem, ...], str]]:
        # Exceptions cross process boundaries (multiprocessing, pytest-xdist) by pickle.
        return type(self), (self.problems, self.summary)

    def report(self) -> str:
        """The full human-readable report: one summary line, then one line per problem."""
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{self.summary}: {count} {noun}"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)


class UnsafeSettingsError(ConfigError):
    """Settings loaded fine but violate production safety rules that are fatal here."""


class Redactor:
    """Replaces known secret values inside free text (error messages from validators, ...).

    A value is replaced where it is not glued to further letters or digits, so a secret
    ``short`` does not turn ``shorter`` into ``*****er``. Values shorter than four characters
    are not redacted: replacing every ``a`` would garble the message, and such secrets are
    reported as weak by the built-in rules anyway.
    """

    __slots__ = ("_pattern", "_values")

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str) -> None:
        if len(value) >= 4 and value not in self._values:
            self._values.add(value)
            self._pattern = None

    def __call__(self, text: str) -> str:
        if not self._values:
            return text
        if self._pattern is None:
            alternatives = "|".join(
                re.escape(v) for v in sorted(self._values, key=len, reverse=True)
            )
            self._pattern = re.compile(f"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")
        return self._pattern.sub(MASK, text)
