"""The saasfw session: tenant and soft-delete criteria, actor stamping, single-task guard."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper, ORMExecuteState, Session, UOWTransaction, with_loader_criteria

from saasfw.core import ActorIdProvider
from saasfw.db._errors import TenantScopeError
from saasfw.db._guard import SessionGuard, checked, guarded
from saasfw.db._model import AuditMixin, SoftDeleteMixin, TenantMixin

TenantProvider = Callable[[], str | None]
"""Port: the tenant of the current request, applied to every ``TenantMixin`` model."""

ACTOR_KEY = "saasfw.db.actor"
TENANT_KEY = "saasfw.db.tenant"
SETTINGS_KEY = "saasfw.db.paging"


def current_actor(session: Session) -> str | None:
    """The actor of ``session`` according to its actor port (None without a port)."""
    provider = cast(ActorIdProvider | None, session.info.get(ACTOR_KEY))
    return None if provider is None else provider()


def current_tenant(session: Session) -> str:
    """The tenant of ``session``; raises ``TenantScopeError`` when there is none (fail closed)."""
    provider = cast(TenantProvider | None, session.info.get(TENANT_KEY))
    tenant = None if provider is None else provider()
    if not tenant:
        raise TenantScopeError(
            "a tenant-scoped model was used without a tenant in context: configure the "
            "tenant port, or pass execution_options(all_tenants=True) for cross-tenant jobs"
        )
    return tenant


class ScopedSession(Session):
    """The synchronous session behind ``GuardedAsyncSession``; carries the ORM event hooks."""


_REACHES: dict[tuple[Mapper[Any], type], bool] = {}


def _reaches(mapper: Mapper[Any], mixin: type) -> bool:
    """Whether ``mapper`` or any model reachable through its relationships has ``mixin``.

    Criteria must be attached to the top-level statement to propagate into joins and
    relationship loads (eager and lazy), so a query on a plain parent still hides its
    soft-deleted or foreign-tenant children. Cached: mappers do not change after setup.
    """
    key = (mapper, mixin)
    found = _REACHES.get(key)
    if found is None:
        seen: set[Mapper[Any]] = set()
        stack = [mapper]
        found = False
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            if issubclass(current.class_, mixin):
                found = True
                break
            stack.extend(relationship.mapper for relationship in current.relationships)
        _REACHES[key] = found
    return found


def _tenant_or_none(session: Session) -> str | None:
    provider = cast(TenantProvider | None, session.info.get(TENANT_KEY))
    return (provider() or None) if provider is not None else None


@event.listens_for(ScopedSession, "do_orm_execute")
def _apply_scope_criteria(state: ORMExecuteState) -> None:
    if state.is_column_load or state.is_relationship_load:
        return  # the criteria of the parent statement propagate to these loads
    if not (state.is_select or state.is_update or state.is_delete):
        return
    options = state.execution_options
    mappers = state.all_mappers
    if not options.get("include_deleted", False) and any(
        _reaches(mapper, SoftDeleteMixin) for mapper in mappers
    ):
        state.statement = state.statement.options(
            with_loader_criteria(
                SoftDeleteMixin,
                lambda cls: cls.deleted_at.is_(None),
                include_aliases=True,
            )
        )
    if not options.get("all_tenants", False) and any(
        _reaches(mapper, TenantMixin) for mapper in mappers
    ):
        if any(issubclass(mapper.class_, TenantMixin) for mapper in mappers):
            tenant: str | None = current_tenant(state.session)  # direct use: fail loudly
        else:
            tenant = _tenant_or_none(state.session)
        if tenant is None:
            # Reached only through relationships and no tenant: load none of those rows
            # (tenant_id is NOT NULL, so this matches nothing).
            criteria = with_loader_criteria(
                TenantMixin, lambda cls: cls.tenant_id.is_(None), include_aliases=True
            )
        else:
            criteria = with_loader_criteria(
                TenantMixin, lambda cls: cls.tenant_id == tenant, include_aliases=True
            )
        state.statement = state.statement.options(criteria)


@event.listens_for(ScopedSession, "before_flush")
def _stamp_rows(session: Session, flush_context: UOWTransaction, instances: object) -> None:
    actor: str | None = None
    actor_known = False
    for obj in session.new:
        if isinstance(obj, AuditMixin):
            if not actor_known:
                actor, actor_known = current_actor(session), True
            if obj.created_by is None:
                obj.created_by = actor
            if obj.updated_by is None:
                obj.updated_by = actor
        if isinstance(obj, TenantMixin):
            tenant = current_tenant(session)
            if obj.tenant_id is None:
                obj.tenant_id = tenant
            elif obj.tenant_id != tenant:
                raise TenantScopeError("refused to write a row of another tenant")
    for obj in session.dirty:
        if (
            isinstance(obj, TenantMixin)
            and session.is_modified(obj)
            and obj.tenant_id != current_tenant(session)
        ):
            raise TenantScopeError("refused to write a row of another tenant")
        if isinstance(obj, AuditMixin) and session.is_modified(obj):
            if not actor_known:
                actor, actor_known = current_actor(session), True
            obj.updated_by = actor


class GuardedAsyncSession(AsyncSession):
    """An ``AsyncSession`` that raises ``ConcurrentSessionUseError`` on overlapping use.

    Two tasks awaiting one session at once would interleave statements on one connection
    and corrupt the identity map; this turns that bug into a clear error at the second
    caller, leaving the first operation untouched. Its ``UnitOfWork`` then waits for the
    first operation to finish, rolls everything back and returns the connection.
    """

    sync_session_class = ScopedSession

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._saasfw_guard = SessionGuard()

    execute = guarded(AsyncSession.execute)
    # mypy cannot match this particular overload set through the TypeVar; same signature.
    scalar = guarded(AsyncSession.scalar)  # type: ignore[assignment, arg-type]
    scalars = guarded(AsyncSession.scalars)
    get = guarded(AsyncSession.get)
    get_one = guarded(AsyncSession.get_one)
    stream = guarded(AsyncSession.stream)
    stream_scalars = guarded(AsyncSession.stream_scalars)
    delete = guarded(AsyncSession.delete)
    merge = guarded(AsyncSession.merge)
    flush = guarded(AsyncSession.flush)
    refresh = guarded(AsyncSession.refresh)
    commit = guarded(AsyncSession.commit)
    rollback = guarded(AsyncSession.rollback)
    run_sync = guarded(AsyncSession.run_sync)
    connection = guarded(AsyncSession.connection)
    add = checked(AsyncSession.add)
    add_all = checked(AsyncSession.add_all)
    # The transaction objects run BEGIN/SAVEPOINT when entered, right after this check.
    begin = checked(AsyncSession.begin)
    begin_nested = checked(AsyncSession.begin_nested)
