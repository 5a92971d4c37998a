"""``Repository``: typed CRUD, bulk insert, upsert and paging for one model."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar, cast

from sqlalchemy import ColumnElement, Select, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from saasfw.db._errors import ConflictError, NotFoundError, StaleVersionError, TenantScopeError
from saasfw.db._model import AuditMixin, TimestampMixin
from saasfw.db._paging import (
    CursorCodec,
    KeysetPage,
    KeysetPageRequest,
    OffsetPage,
    OffsetPageRequest,
    PagingPolicy,
    SortKey,
    parse_limit,
    parse_offset,
    parse_sort,
)
from saasfw.db._query import after_clause, column_of, filter_clauses, model_info, order_terms
from saasfw.db._session import SETTINGS_KEY, current_actor, current_tenant
from saasfw.db._translate import translating
from saasfw.db._types import utcnow

ModelT = TypeVar("ModelT")

_PROTECTED = frozenset({"version", "tenant_id", "created_at", "created_by", "deleted_at"})


class Repository(Generic[ModelT]):
    """Data access for one model through one session.

    Subclass per model and declare what clients may filter and sort by::

        class OrderRepository(Repository[Order]):
            model = Order
            filterable = frozenset({"status", "customer_id"})
            sortable = frozenset({"created_at", "total"})
            default_sort = (SortKey("created_at", descending=True),)

    Soft-deleted rows are hidden and tenant scoping applies on every method (through the
    session's criteria); errors are saasfw.db errors. The repository never commits: the
    unit of work does.
    """

    model: type[ModelT]
    filterable: ClassVar[frozenset[str]] = frozenset()
    sortable: ClassVar[frozenset[str]] = frozenset()
    default_sort: ClassVar[tuple[SortKey, ...]] = ()

    def __init__(
        self,
        session: AsyncSession,
        *,
        paging: PagingPolicy | None = None,
        cursor_codec: CursorCodec | None = None,
    ) -> None:
        self.session = session
        configured = session.info.get(SETTINGS_KEY)
        default_paging, default_codec = configured if configured else (PagingPolicy(), None)
        self.paging: PagingPolicy = paging or default_paging
        self._codec: CursorCodec | None = cursor_codec or default_codec
        info = model_info(self.model)
        self._info = info
        self._pk_name = info.pk_name
        self._pk = info.pk
        self._columns = info.columns
        self._entity = self.model.__name__
        self._soft = info.soft
        self._versioned = info.versioned
        self._tenanted = info.tenanted

    # -- reads -----------------------------------------------------------------------------

    async def get(self, key: Any, *, include_deleted: bool = False) -> ModelT:
        """The row with primary key ``key``; ``NotFoundError`` if absent, deleted or foreign."""
        row = await self.get_or_none(key, include_deleted=include_deleted)
        if row is None:
            raise NotFoundError(self._entity, key)
        return row

    async def get_or_none(self, key: Any, *, include_deleted: bool = False) -> ModelT | None:
        """The row with primary key ``key``, or None."""
        with translating():
            if include_deleted:
                row = await self.session.get(
                    self.model, key, execution_options={"include_deleted": True}
                )
            else:
                row = await self.session.get(self.model, key)
        if row is None:
            return None
        # An identity-map hit skips SQL and thus the criteria: re-check them here.
        if not include_deleted and self._soft and cast(Any, row).deleted_at is not None:
            return None
        if self._tenanted and cast(Any, row).tenant_id != current_tenant(self.session.sync_session):
            return None
        return row

    async def list(
        self,
        *,
        filters: Mapping[str, Any] | None = None,
        sort: str | Sequence[str] | None = None,
        limit: int | str | None = None,
        offset: int | str | None = None,
        include_deleted: bool = False,
    ) -> builtins.list[ModelT]:
        """Rows matching allow-listed equality ``filters``, in a total order, one page long."""
        request = self.offset_request(limit=limit, offset=offset, sort=sort)
        statement = self._select(filters, include_deleted)
        statement = statement.order_by(*self._order_by(request.sort)).limit(request.limit)
        if request.offset:
            statement = statement.offset(request.offset)
        with translating():
            return list((await self.session.scalars(statement)).all())

    async def count(
        self, *, filters: Mapping[str, Any] | None = None, include_deleted: bool = False
    ) -> int:
        """Number of rows matching ``filters``."""
        statement = (
            select(func.count(self._pk))
            .where(*self._where(filters))
            .execution_options(include_deleted=include_deleted)
        )
        with translating():
            return int((await self.session.execute(statement)).scalar_one())

    async def exists(
        self, *, filters: Mapping[str, Any] | None = None, include_deleted: bool = False
    ) -> bool:
        """Whether any row matches ``filters``."""
        statement = (
            select(self._pk)
            .where(*self._where(filters))
            .limit(1)
            .execution_options(include_deleted=include_deleted)
        )
        with translating():
            return (await self.session.execute(statement)).first() is not None

    # -- writes ----------------------------------------------------------------------------

    async def add(self, row: ModelT) -> ModelT:
        """Insert ``row`` and flush (ids and defaults are then set; duplicates raise here)."""
        self.session.add(row)
        try:
            with translating():
                await self.session.flush()
        except BaseException:
            if row in self.session.new:
                self.session.expunge(row)  # do not retry the failed insert at commit
            raise
        return row

    async def add_many(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Bulk insert plain mappings in batched multi-row INSERTs (insertmanyvalues).

        Much faster than ``session.add_all`` for large batches; returns the row count.
        Actor and tenant are stamped like ``add`` does; objects are not loaded back.
        """
        prepared = [self._stamp_new(dict(row)) for row in rows]
        if not prepared:
            return 0
        with translating():
            await self.session.execute(insert(self.model), prepared)
        return len(prepared)

    async def update(
        self, key: Any, values: Mapping[str, Any], *, expected_version: int | None = None
    ) -> ModelT:
        """Partial update of one row in one statement; returns the updated row.

        With ``expected_version`` (e.g. from ``If-Match``), a row changed since that version
        raises ``StaleVersionError`` instead of being overwritten. Keys, tenant, version,
        creation stamps and ``deleted_at`` cannot be set through here.
        """
        forbidden = set(values) & (_PROTECTED | {self._pk_name})
        unknown = set(values) - self._columns
        if forbidden or unknown:
            raise ValueError(
                f"{self._entity}.update: cannot set {sorted(forbidden | unknown)} "
                "(unknown or protected columns)"
            )
        return await self._update_one(key, dict(values), expected_version, include_deleted=False)

    async def delete(
        self, key: Any, *, hard: bool = False, expected_version: int | None = None
    ) -> None:
        """Soft delete (models with ``SoftDeleteMixin``) or, with ``hard=True``, DELETE."""
        if self._soft and not hard:
            await self._update_one(
                key, {"deleted_at": utcnow()}, expected_version, include_deleted=False
            )
            return
        statement = delete(self.model).where(self._pk == key)
        if expected_version is not None and self._versioned:
            statement = statement.where(cast(Any, self.model).version == expected_version)
        with translating():
            result = await self.session.execute(
                statement.execution_options(include_deleted=True, synchronize_session="fetch")
            )
        if cast(Any, result).rowcount == 0:
            await self._raise_missing(key, include_deleted=True)

    async def restore(self, key: Any) -> ModelT:
        """Undo a soft delete."""
        if not self._soft:
            raise TypeError(f"{self._entity} has no soft delete")
        return await self._update_one(key, {"deleted_at": None}, None, include_deleted=True)

    async def upsert(
        self,
        values: Mapping[str, Any],
        *,
        conflict_on: Sequence[str] | None = None,
        update_columns: Sequence[str] | None = None,
    ) -> ModelT:
        """Insert ``values`` or update the row that conflicts on ``conflict_on`` (default: key).

        One ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` on SQLite and PostgreSQL. A
        soft-deleted row is revived. A conflicting row of another tenant is never touched:
        that raises ``ConflictError``.
        """
        row = self._stamp_new(dict(values))
        conflict = list(conflict_on or [self._pk_name])
        if set(conflict) - self._columns or set(values) - self._columns:
            raise ValueError(f"{self._entity}.upsert: unknown columns")
        updatable = (
            list(update_columns)
            if update_columns is not None
            else [name for name in values if name not in conflict and name not in _PROTECTED]
        )
        if set(updatable) & (_PROTECTED | {self._pk_name}):
            raise ValueError(f"{self._entity}.upsert: cannot update protected columns")
        dialect = self.session.get_bind().dialect.name
        statement: Any
        if dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            statement = postgresql.insert(self.model).values(**row)
        elif dialect == "sqlite":
            from sqlalchemy.dialects import sqlite

            statement = sqlite.insert(self.model).values(**row)
        else:  # pragma: no cover - only the two supported backends get here
            raise NotImplementedError(f"upsert is not implemented for {dialect}")
        model = cast(Any, self.model)
        set_: dict[str, Any] = {name: statement.excluded[name] for name in updatable}
        self._stamp_update(set_)
        if self._soft:
            set_["deleted_at"] = None
        where = model.tenant_id == statement.excluded.tenant_id if self._tenanted else None
        upsert = statement.on_conflict_do_update(index_elements=conflict, set_=set_, where=where)
        with translating():
            result = await self.session.execute(
                upsert.returning(self.model).execution_options(populate_existing=True)
            )
            saved = result.scalars().first()
        if saved is None:
            raise ConflictError("the conflicting row belongs to another tenant")
        return saved  # type: ignore[no-any-return]

    # -- paging ----------------------------------------------------------------------------

    def keyset_request(
        self,
        *,
        limit: int | str | None = None,
        cursor: str | None = None,
        sort: str | Sequence[str] | None = None,
    ) -> KeysetPageRequest:
        """Validate client paging input (no SQL); raises ``InvalidQueryError`` (400)."""
        keys = self._sort(sort)
        size = parse_limit(limit, self.paging)
        after = None
        if cursor:
            after = self._cursor_codec().decode(self._scope(), keys, cursor)
        return KeysetPageRequest(sort=keys, limit=size, after=after)

    def offset_request(
        self,
        *,
        limit: int | str | None = None,
        offset: int | str | None = None,
        sort: str | Sequence[str] | None = None,
    ) -> OffsetPageRequest:
        """Validate client paging input (no SQL); raises ``InvalidQueryError`` (400)."""
        return OffsetPageRequest(
            sort=self._sort(sort),
            limit=parse_limit(limit, self.paging),
            offset=parse_offset(offset, self.paging),
        )

    async def page(
        self,
        request: KeysetPageRequest,
        *,
        filters: Mapping[str, Any] | None = None,
        include_deleted: bool = False,
    ) -> KeysetPage[ModelT]:
        """One keyset page: stable under concurrent inserts, cost independent of depth."""
        statement = self._select(filters, include_deleted)
        if request.after is not None:
            statement = statement.where(self._after(request.sort, request.after))
        statement = statement.order_by(*self._order_by(request.sort)).limit(request.limit + 1)
        with translating():
            items = list((await self.session.scalars(statement)).all())
        next_cursor = None
        if len(items) > request.limit:
            items = items[: request.limit]
            last = items[-1]
            values = [getattr(last, key.name) for key in request.sort]
            next_cursor = self._cursor_codec().encode(self._scope(), request.sort, values)
        return KeysetPage(items=items, next_cursor=next_cursor, limit=request.limit)

    async def page_offset(
        self,
        request: OffsetPageRequest,
        *,
        filters: Mapping[str, Any] | None = None,
        include_deleted: bool = False,
    ) -> OffsetPage[ModelT]:
        """One offset page with the total count (two statements)."""
        total = await self.count(filters=filters, include_deleted=include_deleted)
        statement = self._select(filters, include_deleted).order_by(*self._order_by(request.sort))
        statement = statement.limit(request.limit).offset(request.offset)
        with translating():
            items = list((await self.session.scalars(statement)).all())
        return OffsetPage(items=items, total=total, limit=request.limit, offset=request.offset)

    # -- internals -------------------------------------------------------------------------

    def _scope(self) -> str:
        return str(cast(Any, self.model).__table__.fullname)

    def _cursor_codec(self) -> CursorCodec:
        if self._codec is None:
            raise RuntimeError(
                "keyset paging needs a cursor key: use a session from Database or pass "
                "cursor_codec=CursorCodec(key)"
            )
        return self._codec

    def _sort(self, raw: str | Sequence[str] | None) -> tuple[SortKey, ...]:
        return parse_sort(raw, self.sortable, self.default_sort, (self._pk_name,))

    def _column(self, name: str) -> InstrumentedAttribute[Any]:
        return column_of(self._info, name)

    def _order_by(self, keys: tuple[SortKey, ...]) -> builtins.list[ColumnElement[Any]]:
        return order_terms(self._info, keys)

    def _after(self, keys: tuple[SortKey, ...], values: tuple[Any, ...]) -> ColumnElement[bool]:
        """Rows strictly after ``values`` in the order ``keys`` (mixed directions allowed)."""
        return after_clause(self._info, keys, values)

    def _where(self, filters: Mapping[str, Any] | None) -> builtins.list[ColumnElement[bool]]:
        return filter_clauses(self._info, self.filterable, filters)

    def _select(self, filters: Mapping[str, Any] | None, include_deleted: bool) -> Select[Any]:
        statement = select(self.model)
        if filters:
            statement = statement.where(*self._where(filters))
        if include_deleted:
            statement = statement.execution_options(include_deleted=True)
        return statement

    def _stamp_new(self, row: dict[str, Any]) -> dict[str, Any]:
        sync_session = self.session.sync_session
        if issubclass(self.model, AuditMixin):
            actor = current_actor(sync_session)
            row.setdefault("created_by", actor)
            row.setdefault("updated_by", actor)
        if self._tenanted:
            tenant = current_tenant(sync_session)
            if row.setdefault("tenant_id", tenant) != tenant:
                raise TenantScopeError("refused to write a row of another tenant")
        return row

    def _stamp_update(self, values: dict[str, Any]) -> None:
        model = cast(Any, self.model)
        if issubclass(self.model, TimestampMixin):
            values["updated_at"] = utcnow()
        if issubclass(self.model, AuditMixin):
            values["updated_by"] = current_actor(self.session.sync_session)
        if self._versioned:
            values["version"] = model.version + 1

    async def _update_one(
        self,
        key: Any,
        values: dict[str, Any],
        expected_version: int | None,
        *,
        include_deleted: bool,
    ) -> ModelT:
        self._stamp_update(values)
        statement = update(self.model).where(self._pk == key).values(**values)
        if expected_version is not None and self._versioned:
            statement = statement.where(cast(Any, self.model).version == expected_version)
        statement = statement.returning(self.model).execution_options(
            include_deleted=include_deleted, populate_existing=True, synchronize_session=False
        )
        with translating():
            row = (await self.session.execute(statement)).scalars().first()
        if row is None:
            await self._raise_missing(key, include_deleted=include_deleted)
        return cast(ModelT, row)

    async def _raise_missing(self, key: Any, *, include_deleted: bool) -> None:
        """Nothing matched: the row is gone (404) or its version moved on (409)."""
        statement = (
            select(self._pk)
            .where(self._pk == key)
            .execution_options(include_deleted=include_deleted)
        )
        with translating():
            present = (await self.session.execute(statement)).first() is not None
        if present:
            raise StaleVersionError(
                f"{self._entity} {key!s} was changed by someone else; re-read it and retry",
                entity=self._entity,
                key=key,
            )
        raise NotFoundError(self._entity, key)
