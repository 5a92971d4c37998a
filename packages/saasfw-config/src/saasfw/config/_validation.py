"""Validation of the merged values by the model's strict, frozen twin, errors traced back.

Every pydantic error becomes a ``Problem`` at its data path (union tags left out) with the
layer that set it, a suggestion for a misspelt key, or the variable that would set a
missing one; paths a layer already explained are not reported twice.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from saasfw.config._errors import Problem
from saasfw.config._model import (
    annotation_at,
    fields_by_key,
    harden,
    is_secret,
    mapping_value_type,
    model_of,
    sequence_item_type,
    union_models,
)
from saasfw.config._state import LoadState, Path_, dotted
from saasfw.config._variables import env_var_name

M = TypeVar("M", bound=BaseModel)


def validate(run: LoadState, model: type[M]) -> M | None:
    """The frozen settings, or None with every validation problem recorded on ``run``."""
    collect_secrets(run, run.model, run.data)
    twin = harden(model)
    try:
        return twin.model_validate(run.data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            _validation_problem(run, tuple(error["loc"]), error["type"], error["msg"])
        return None


def collect_secrets(run: LoadState, annotation: Any, value: Any) -> None:
    """Teach the redactor every raw secret value and every password inside a URL."""
    if isinstance(value, str):
        if is_secret(annotation):
            run.redact.add(value)
        if "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                run.redact.add(password)
        return
    nested = model_of(annotation) if annotation is not None else None
    if isinstance(value, dict):
        for key, item in value.items():
            child: Any = None
            if nested is not None:
                found = nested.model_fields.get(key) or next(
                    (
                        info
                        for info in nested.model_fields.values()
                        if key in (info.alias, info.validation_alias)
                    ),
                    None,
                )
                child = found.annotation if found is not None else None
            elif annotation is not None:
                child = mapping_value_type(annotation)
            collect_secrets(run, child, item)
    elif isinstance(value, list):
        element = sequence_item_type(annotation) if annotation is not None else None
        for item in value:
            collect_secrets(run, element, item)


def display_path(run: LoadState, loc: Path_) -> Path_:
    """The data path of a pydantic error location, without union tags.

    pydantic puts union members into ``loc`` (``("backend", "b", "z")`` for a
    discriminated union, ``("port", "int")`` for ``int | str``). A segment is kept when
    it exists in the data, or names a field of the model at that point (a missing field
    or a default value); anything else is such a tag and is left out.
    """
    path: list[str | int] = []
    current: Any = run.data
    annotation: Any = run.model
    for part in loc:
        models = [] if annotation is None else union_models(annotation)
        field = None
        for candidate in models:
            found = fields_by_key(candidate).get(part) if isinstance(part, str) else None
            if found is not None:
                field = found[1]
                break
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and part < len(current)
        if not (in_dict or in_list or field is not None):
            continue
        path.append(part)
        current = current[part] if in_dict or in_list else None
        if field is not None:
            annotation = field.annotation
        elif annotation is None:
            pass
        elif in_dict:
            annotation = mapping_value_type(annotation)
        else:
            annotation = sequence_item_type(annotation)
    return tuple(path)


def _validation_problem(run: LoadState, loc: Path_, kind: str, message: str) -> None:
    path = display_path(run, loc)
    key = tuple(path)
    for reported in run.reported:
        if key[: len(reported)] == reported:
            return  # already explained by a YAML/expansion problem at this path
    source = run.source_of(key)
    if kind == "extra_forbidden":
        message = f"unknown key '{key[-1]}'" + _suggestion(run, key)
        kind = "unknown_key"
    elif kind == "missing":
        source = "not set in any layer"
        message = f"required setting is missing (set it in YAML or as {env_var_name(key)})"
    else:
        message = f"{message} [{kind}]"
    run.problems.append(Problem(dotted(key), source, message, kind))


def _suggestion(run: LoadState, key: Path_) -> str:
    parent = annotation_at(run.model, key[:-1])
    nested = model_of(parent) if parent is not None else None
    if nested is None:
        return ""
    import difflib

    close = difflib.get_close_matches(str(key[-1]), list(nested.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else " (not a field of this section)"
