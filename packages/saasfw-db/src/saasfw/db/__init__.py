"""saasfw.db: async SQLAlchemy 2 repository, unit of work and per-service isolation.

Importing this package does not import Alembic (migrations live in
``saasfw.db.migrations``) or FastAPI's response machinery beyond what handlers need.
"""

from typing import TYPE_CHECKING

from saasfw.core import lazy_exports
from saasfw.db._database import Database
from saasfw.db._errors import (
    ConcurrentSessionUseError,
    ConflictError,
    DatabaseError,
    DatabaseUnavailableError,
    DuplicateKeyError,
    InvalidQueryError,
    MissingExtraError,
    NotFoundError,
    SchemaBehindError,
    SchemaMismatchError,
    StaleVersionError,
    TenantScopeError,
)
from saasfw.db._fastapi import PageQuery, install_exception_handlers, page_query, problem_response
from saasfw.db._ids import uuid7
from saasfw.db._model import (
    AuditMixin,
    Base,
    BigIntPrimaryKey,
    SoftDeleteMixin,
    TenantMixin,
    TimestampMixin,
    UUIDPrimaryKey,
    VersionMixin,
)
from saasfw.db._paging import (
    CursorCodec,
    KeysetPage,
    KeysetPageRequest,
    OffsetPage,
    OffsetPageRequest,
    PagingPolicy,
    SortKey,
)
from saasfw.db._provision import provision_postgres_service
from saasfw.db._repository import Repository
from saasfw.db._rules import production_problems
from saasfw.db._session import GuardedAsyncSession, TenantProvider
from saasfw.db._settings import DbSettings
from saasfw.db._types import UtcDateTime, utcnow
from saasfw.db._unit_of_work import UnitOfWork
from saasfw.db._version import __version__

if TYPE_CHECKING:
    from saasfw.core import ActorIdProvider as ActorProvider

# Deprecated after 0.2.0, removed in 0.4: saasfw.audit's ActorProvider returns an Actor,
# this one only an id, so the port is now saasfw.core's, named for what it returns.
_DEPRECATED = {
    "ActorProvider": (
        "saasfw.core",
        "ActorIdProvider",
        "saasfw.db.ActorProvider is deprecated and will be removed in saasfw-db 0.4; "
        "use saasfw.core.ActorIdProvider (the same port)",
    )
}
__getattr__, __dir__ = lazy_exports(__name__, {}, deprecated=_DEPRECATED)

__all__ = [
    "ActorProvider",
    "AuditMixin",
    "Base",
    "BigIntPrimaryKey",
    "ConcurrentSessionUseError",
    "ConflictError",
    "CursorCodec",
    "Database",
    "DatabaseError",
    "DatabaseUnavailableError",
    "DbSettings",
    "DuplicateKeyError",
    "GuardedAsyncSession",
    "InvalidQueryError",
    "KeysetPage",
    "KeysetPageRequest",
    "MissingExtraError",
    "NotFoundError",
    "OffsetPage",
    "OffsetPageRequest",
    "PageQuery",
    "PagingPolicy",
    "Repository",
    "SchemaBehindError",
    "SchemaMismatchError",
    "SoftDeleteMixin",
    "SortKey",
    "StaleVersionError",
    "TenantMixin",
    "TenantProvider",
    "TenantScopeError",
    "TimestampMixin",
    "UUIDPrimaryKey",
    "UnitOfWork",
    "UtcDateTime",
    "VersionMixin",
    "__version__",
    "install_exception_handlers",
    "page_query",
    "problem_response",
    "production_problems",
    "provision_postgres_service",
    "utcnow",
    "uuid7",
]
