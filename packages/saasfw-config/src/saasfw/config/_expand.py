"""``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` expansion inside YAML strings.

``$${`` is an escape for a literal ``${``. A ``$`` not followed by ``{`` is literal. As in
POSIX shells, ``:-`` and ``:?`` treat a set-but-empty variable like an unset one, while a
bare ``${VAR}`` accepts an empty value and refuses only an unset one. Defaults are literal
text (no nested expansion) and cannot contain ``}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_INNER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)(.*))?", re.DOTALL)

Lookup = Callable[[str], str | None]


class ExpansionProblem(Exception):
    """Internal: why a string could not be expanded."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


def expand(text: str, lookup: Lookup) -> str:
    """Expand every expression in ``text``; raise ExpansionProblem for the first bad one."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    length = len(text)
    while i < length:
        char = text[i]
        if char != "$":
            out.append(char)
            i += 1
            continue
        if text.startswith("$${", i):
            out.append("${")
            i += 3
            continue
        if not text.startswith("${", i):
            out.append(char)
            i += 1
            continue
        end = text.find("}", i + 2)
        if end == -1:
            raise ExpansionProblem(
                "unterminated '${' (write '$${' for a literal '${')", "bad_expression"
            )
        out.append(_evaluate(text[i + 2 : end], lookup))
        i = end + 1
    return "".join(out)


def _evaluate(inner: str, lookup: Lookup) -> str:
    match = _INNER.fullmatch(inner)
    if match is None:
        raise ExpansionProblem(
            f"malformed expression '${{{inner}}}': expected ${{VAR}}, ${{VAR:-default}} "
            "or ${VAR:?message}",
            "bad_expression",
        )
    name, operator, argument = match.group(1), match.group(2), match.group(3)
    value = lookup(name)
    if operator is None:
        if value is None:
            raise ExpansionProblem(
                f"environment variable '{name}' is not set and has no default "
                f"(use ${{{name}:-default}} to give one)",
                "unset_variable",
            )
        return value
    if value:
        return value
    if operator == ":-":
        return argument
    detail = argument or "required"
    raise ExpansionProblem(
        f"environment variable '{name}' is not set or empty: {detail}", "unset_variable"
    )
