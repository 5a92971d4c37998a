"""Which ``SAASFW_*`` variable names a setting, and what to say about one that names none.

The loader and deploy-time checks (``unknown_variables``) share this one name resolution:
``SAASFW_DB__URL`` walks the model field by field (case-insensitive, by key or name), a
``_FILE`` suffix points at a secret file, and a name that matches nothing gets the closest
real variable as a suggestion.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel

from saasfw.config._errors import Problem
from saasfw.config._model import fields_by_key, find_field, mapping_value_type, model_of

ENV_PREFIX = "SAASFW_"
# Variables that steer the loader itself; they never map onto a settings field.
CONTROL_VARIABLES = frozenset(
    {
        "SAASFW_ENV",
        "SAASFW_CONFIG_DIR",
        "SAASFW_ENV_FILE",
        "SAASFW_SECRETS_DIR",
        "SAASFW_CONFIG_MODEL",  # read by the CLI
    }
)
# SAASFW_* variables that other saasfw tools read (never a settings field, never flagged):
# the loader's own, the image's start command, the migration CLI, the test-suite.
FOREIGN_VARIABLES: tuple[str, ...] = (
    *sorted(CONTROL_VARIABLES),
    "SAASFW_APP",  # deploy/docker/start.sh: the ASGI app to serve
    "SAASFW_SERVICE_NAME",  # saasfw-db migrations CLI
    "SAASFW_DB_MIGRATIONS",  # saasfw-db migrations CLI
    "SAASFW_REQUIRE_SERVICES",  # test-suite: fail instead of skip without services
    "SAASFW_TEST_*",  # test-suite: SAASFW_TEST_POSTGRES_URL, SAASFW_TEST_REDIS_URL, ...
)
_MAX_DEPTH = 8  # flattening stops here (and at recursive models)


def env_var_name(path: tuple[str | int, ...]) -> str:
    """The environment variable that sets ``path`` (``("db", "url")`` -> ``SAASFW_DB__URL``)."""
    return ENV_PREFIX + "__".join(str(part).upper() for part in path)


def resolve_variable(
    model: type[BaseModel], rest: str
) -> tuple[tuple[str, ...], Any] | tuple[None, int]:
    """Map ``DB__URL`` (a name without the prefix) onto a field path and its annotation.

    Returns ``(path, annotation)``, or ``(None, depth)`` with the index of the first segment
    that names nothing (0: not even the top-level field exists).
    """
    segments = rest.split("__")
    annotation: Any = model
    path: list[str] = []
    for index, segment in enumerate(segments):
        if not segment:
            return None, index
        nested = model_of(annotation)
        if nested is not None:
            found = find_field(nested, segment)
            if found is None:
                return None, index
            path.append(found[0])
            annotation = found[1].annotation
            continue
        value_type = mapping_value_type(annotation)
        if value_type is None:
            return None, index
        path.append(segment.lower())
        annotation = value_type
    return tuple(path), annotation


def is_foreign(name: str, allow: Iterable[str] = ()) -> bool:
    """Whether ``name`` is a variable another tool reads (``FOREIGN_VARIABLES`` or ``allow``)."""
    upper = name.upper()
    return any(
        fnmatch.fnmatchcase(upper, pattern.upper()) for pattern in (*FOREIGN_VARIABLES, *allow)
    )


def variable_names(model: type[BaseModel]) -> list[str]:
    """Every variable that sets a field of ``model``: sections, and leaves below them."""
    return sorted(set(_names(model, ENV_PREFIX, 0, set())))


def _names(
    model: type[BaseModel], prefix: str, depth: int, active: set[type[BaseModel]]
) -> Iterator[str]:
    if depth >= _MAX_DEPTH or model in active:
        return
    active.add(model)
    for key, (_, info) in fields_by_key(model).items():
        name = prefix + key.upper()
        yield name
        nested = model_of(info.annotation)
        if nested is not None:
            yield from _names(nested, name + "__", depth + 1, active)
    active.discard(model)


def closest_variable(model: type[BaseModel], name: str) -> str | None:
    """The real variable ``name`` most likely meant (a typo, a missing section), or None."""
    upper = name.upper()
    suffix = "_FILE" if upper.endswith("_FILE") and len(upper) > len(ENV_PREFIX) + 5 else ""
    wanted = upper.removesuffix(suffix).removeprefix(ENV_PREFIX)
    # Compared without the shared prefix, which would make every pair look alike.
    candidates = [
        n.removeprefix(ENV_PREFIX) for n in variable_names(model) if n not in CONTROL_VARIABLES
    ]
    close = difflib.get_close_matches(wanted, candidates, n=1, cutoff=0.6)
    if not close:
        close = _by_words(wanted, candidates)
    if not close:
        # Several sections deep the whole name drifts too far: match the first segment.
        first = wanted.split("__", 1)[0]
        tops = [key.upper() for key in fields_by_key(model)]
        close = difflib.get_close_matches(first, tops, n=1, cutoff=0.6)
    return ENV_PREFIX + close[0] + suffix if close else None


def _by_words(wanted: str, candidates: list[str]) -> list[str]:
    """Candidates holding every word of ``wanted``, in order, as a word start.

    ``LOG_LEVEL`` (a section left out, a word shortened) finds
    ``OBSERVABILITY__LOGGING__LEVEL``; the closest such candidate wins.
    """
    words = [w for w in wanted.split("_") if w]
    matches: list[str] = []
    for candidate in candidates:
        remaining = iter(w for w in candidate.split("_") if w)
        if words and all(any(c.startswith(w) for c in remaining) for w in words):
            matches.append(candidate)
    ranked = sorted(matches, key=lambda c: -difflib.SequenceMatcher(None, wanted, c).ratio())
    return ranked[:1]


def unknown_top_level_message(model: type[BaseModel], name: str) -> str:
    """``SAASFW_SECURTY__X is not a setting; did you mean SAASFW_SECURITY__X?``."""
    close = closest_variable(model, name)
    hint = f"; did you mean {close}?" if close else " (no setting has a similar name)"
    return f"{name} is not a setting{hint}"


def nested_hint(model: type[BaseModel], known: list[str], wrong: str) -> str:
    """The suggestion for a variable whose sections exist but whose field ``wrong`` does not."""
    path, annotation = resolve_variable(model, "__".join(known))
    nested = model_of(annotation) if path is not None else None
    if nested is None:
        return ""
    close = difflib.get_close_matches(wrong, list(nested.model_fields), n=1)
    if not close:
        return ""
    return f" (did you mean {ENV_PREFIX}{'__'.join(s.upper() for s in (*known, close[0]))}?)"


def describe_unknown(model: type[BaseModel], name: str) -> str | None:
    """Why ``name`` (a ``SAASFW_*`` variable) sets nothing, or None when it names a setting."""
    rest = name[len(ENV_PREFIX) :]
    path, depth = resolve_variable(model, rest)
    if path is not None:
        return None
    if rest.upper().endswith("_FILE") and resolve_variable(model, rest[: -len("_FILE")])[0]:
        return None
    if depth == 0:
        return unknown_top_level_message(model, name)
    segments = rest.lower().split("__")
    hint = nested_hint(model, segments[:depth], segments[depth]) if depth < len(segments) else ""
    return f"unknown setting: {name} does not name a field{hint}"


def unknown_variables(
    model: type[BaseModel], names: Iterable[str], *, allow: Iterable[str] = ()
) -> list[Problem]:
    """One problem per ``SAASFW_*`` name that sets no field of ``model``, as the loader sees it.

    For deploy-time checks: pass every variable a compose file or a manifest sets. Names
    without the prefix and the foreign variables other saasfw tools read (see
    ``FOREIGN_VARIABLES``, plus ``allow``: names or ``fnmatch`` patterns) are skipped.
    """
    allowed = tuple(allow)
    problems: list[Problem] = []
    for name in names:
        if not name.upper().startswith(ENV_PREFIX) or is_foreign(name, allowed):
            continue
        message = describe_unknown(model, name)
        if message is not None:
            problems.append(Problem("", name, message, "unknown_variable"))
    return problems
