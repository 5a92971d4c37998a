"""Turn a repository's allow-listed filters and sort keys into SQL clauses for its model."""

from __future__ import annotations

import builtins
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, false, or_
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import InstrumentedAttribute, Mapper

from saasfw.db._errors import InvalidQueryError
from saasfw.db._model import SoftDeleteMixin, TenantMixin, VersionMixin
from saasfw.db._paging import SortKey

MAX_IN_VALUES = 1000
"""The most values one ``IN`` filter accepts (a list, tuple or set filter value)."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Mapper facts a repository needs, computed once per model."""

    model: type[Any]
    pk_name: str
    pk: InstrumentedAttribute[Any]
    columns: frozenset[str]
    soft: bool
    versioned: bool
    tenanted: bool
    order_by_cache: dict[tuple[SortKey, ...], builtins.list[ColumnElement[Any]]]

    @property
    def entity(self) -> str:
        return self.model.__name__


_MODEL_INFO: dict[type[Any], ModelInfo] = {}


def model_info(model: type[Any]) -> ModelInfo:
    """The model's ``ModelInfo``, cached (repositories are created per request)."""
    info = _MODEL_INFO.get(model)
    if info is None:
        mapper = cast(Mapper[Any], sa_inspect(model))
        if len(mapper.primary_key) != 1:
            raise TypeError(f"{model.__name__}: Repository needs a single-column primary key")
        pk_name = mapper.get_property_by_column(mapper.primary_key[0]).key
        info = ModelInfo(
            model=model,
            pk_name=pk_name,
            pk=getattr(model, pk_name),
            columns=frozenset(mapper.column_attrs.keys()),
            soft=issubclass(model, SoftDeleteMixin),
            versioned=issubclass(model, VersionMixin),
            tenanted=issubclass(model, TenantMixin),
            order_by_cache={},
        )
        _MODEL_INFO[model] = info
    return info


def column_of(info: ModelInfo, name: str) -> InstrumentedAttribute[Any]:
    """The mapped column attribute ``name``; ``TypeError`` if the model has no such column."""
    if name not in info.columns:
        raise TypeError(f"{info.entity}: {name!r} is not a mapped column")
    return cast(InstrumentedAttribute[Any], getattr(info.model, name))


def order_terms(info: ModelInfo, keys: tuple[SortKey, ...]) -> builtins.list[ColumnElement[Any]]:
    """ORDER BY terms for ``keys`` (cached per model); sort columns must be NOT NULL."""
    terms = info.order_by_cache.get(keys)
    if terms is not None:
        return terms
    terms = []
    for key in keys:
        attribute = column_of(info, key.name)
        if attribute.property.columns[0].nullable:
            # NULLs sort differently per backend and break the keyset predicate.
            raise TypeError(f"{info.entity}.{key.name}: sortable columns must be NOT NULL")
        terms.append(attribute.desc() if key.descending else attribute.asc())
    if len(info.order_by_cache) < 256:  # sort keys are allow-listed, so this stays small
        info.order_by_cache[keys] = terms
    return terms


def after_clause(
    info: ModelInfo, keys: tuple[SortKey, ...], values: tuple[Any, ...]
) -> ColumnElement[bool]:
    """Rows strictly after ``values`` in the order ``keys`` (mixed directions allowed)."""
    branches: builtins.list[ColumnElement[bool]] = []
    for index, key in enumerate(keys):
        equal: builtins.list[ColumnElement[bool]] = [
            column_of(info, k.name) == v for k, v in zip(keys[:index], values, strict=False)
        ]
        attribute = column_of(info, key.name)
        beyond = attribute < values[index] if key.descending else attribute > values[index]
        branches.append(and_(*equal, beyond))
    return or_(*branches)


def filter_clauses(
    info: ModelInfo, filterable: Collection[str], filters: Mapping[str, Any] | None
) -> builtins.list[ColumnElement[bool]]:
    """Equality (or ``IN`` / ``IS NULL``) clauses; a name not in ``filterable`` is refused.

    Raises:
        InvalidQueryError: a filter is not allow-listed or has too many values (400).
    """
    clauses: builtins.list[ColumnElement[bool]] = []
    for name, value in (filters or {}).items():
        if name not in filterable:
            allowed = ", ".join(sorted(filterable)) or "(none)"
            raise InvalidQueryError(
                f"filtering by {name!r} is not allowed; allowed: {allowed}", parameter=name
            )
        attribute = column_of(info, name)
        if value is None:
            clauses.append(attribute.is_(None))
        elif isinstance(value, list | tuple | set | frozenset):
            if len(value) > MAX_IN_VALUES:
                raise InvalidQueryError(
                    f"filter {name!r} accepts at most {MAX_IN_VALUES} values", parameter=name
                )
            clauses.append(attribute.in_(list(value)) if value else false())
        else:
            clauses.append(attribute == value)
    return clauses
