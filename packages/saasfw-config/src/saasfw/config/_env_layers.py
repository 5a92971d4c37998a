"""The variable layers: ``SAASFW_*`` names from the ``.env`` file and the environment.

Each name is mapped onto a field (``SAASFW_DB__URL`` -> ``db.url``); a ``_FILE`` name is
kept as a pointer for the secret-file layer; an unknown name is a problem, or, when its
first segment names no field, judged once every layer is read (``judge_unknown``).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from saasfw.config._errors import Problem
from saasfw.config._files import FileProblem, read_text
from saasfw.config._state import LoadState, Source
from saasfw.config._variables import (
    CONTROL_VARIABLES,
    ENV_PREFIX,
    is_foreign,
    nested_hint,
    resolve_variable,
    unknown_top_level_message,
)

logger = logging.getLogger("saasfw.config")


def dotenv_layer(
    run: LoadState, path: Path, display: str, required: bool
) -> list[tuple[str, str, int]]:
    """Read the ``.env`` file into ``run.dotenv``; its (name, value, line) entries."""
    if not required and not os.path.lexists(path):
        return []
    try:
        text = read_text(path)
    except FileProblem as exc:
        run.problem((), display, f"env file {exc.reason}", exc.kind)
        return []
    from dotenv.parser import parse_stream

    entries: list[tuple[str, str, int]] = []
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original
        line = original.line + len(original.string) - len(original.string.lstrip("\r\n"))
        if binding.error:
            run.problem((), f"{display}:{line}", "cannot parse this line", "dotenv")
        elif binding.key is not None and binding.value is not None:
            run.dotenv[binding.key] = binding.value
            entries.append((binding.key, binding.value, line))
    return entries


def dotenv_variables(
    run: LoadState, entries: Iterable[tuple[str, str, int]], display: str | os.PathLike[str]
) -> None:
    """Apply the ``SAASFW_*`` entries of the ``.env`` file (the loader's own left out)."""
    for name, value, line in entries:
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in CONTROL_VARIABLES:
            variable(run, name, value, f"{display}:{line} ({name})")


def environment_layer(run: LoadState) -> None:
    """Apply the process environment's ``SAASFW_*`` variables (the loader's own left out)."""
    for name, value in sorted(run.environ.items()):
        upper = name.upper()
        if upper.startswith(ENV_PREFIX) and upper not in CONTROL_VARIABLES:
            variable(run, name, value, f"env {name}")


def variable(run: LoadState, name: str, value: str, label: str) -> None:
    """Set the field ``name`` names, keep a ``_FILE`` pointer, or report the name."""
    rest = name[len(ENV_PREFIX) :]
    path, annotation = resolve_variable(run.model, rest)
    if path is not None:
        run.assign(path, annotation, value, Source(label))
        return
    if rest.upper().endswith("_FILE"):
        target, _ = resolve_variable(run.model, rest[: -len("_FILE")])
        if target is not None:
            run.pointers[target] = (value, label)
            return
    depth = annotation
    if depth == 0:  # judged once every layer is read: see judge_unknown()
        run.unknown.append((name, label))
        return
    segments = rest.lower().split("__")
    hint = (
        nested_hint(run.model, segments[:depth], segments[depth]) if depth < len(segments) else ""
    )
    run.problem(
        tuple(segments[: depth + 1]),
        label,
        f"unknown setting: {name} does not name a field{hint}",
        "unknown_key",
    )


def judge_unknown(run: LoadState, fatal: bool, allow: tuple[str, ...]) -> list[Problem]:
    """Report unknown top-level ``SAASFW_*`` names: problems when fatal, else warnings."""
    warnings: list[Problem] = []
    for name, label in run.unknown:
        if is_foreign(name, allow):
            continue
        message = unknown_top_level_message(run.model, name)
        if fatal:
            message += (
                f" ({run.env} refuses unknown SAASFW_ variables: correct or remove it, or "
                "let the loader allow it: allow_unknown_variables / foreign_variables)"
            )
            run.problems.append(Problem("", label, message, "unknown_variable"))
        else:
            warnings.append(Problem("", label, message, "unknown_variable"))
            logger.warning("%s (%s)", message, label)
    return warnings
