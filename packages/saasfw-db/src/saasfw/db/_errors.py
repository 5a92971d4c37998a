"""The exception tree of saasfw.db: one base, a few subclasses, structured attributes.

Messages say what went wrong and what to do; they never carry driver text (which can
contain SQL, parameters or schema names). The original driver exception stays reachable
through ``__cause__`` for logs.
"""

from __future__ import annotations

from typing import Any


class DatabaseError(Exception):
    """Base of every error raised by saasfw.db.

    Attributes:
        status: the HTTP status the FastAPI handlers answer with.
        title: a short, stable, human-readable summary (problem+json ``title``).
        code: a stable machine-readable code (problem+json extension ``code``).
    """

    status: int = 500
    title: str = "Database error"
    code: str = "database_error"

    def __init__(self, detail: str, **context: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.context = context


class NotFoundError(DatabaseError):
    """The requested row does not exist (or is soft-deleted or belongs to another tenant)."""

    status = 404
    title = "Not found"
    code = "db.not_found"

    def __init__(self, entity: str, key: object) -> None:
        super().__init__(f"{entity} {key!s} was not found", entity=entity, key=key)
        self.entity = entity
        self.key = key


class ConflictError(DatabaseError):
    """The write conflicts with the current state of the database; re-read and retry."""

    status = 409
    title = "Conflict"
    code = "db.conflict"


class DuplicateKeyError(ConflictError):
    """A unique constraint (or primary key) rejected the write."""

    title = "Duplicate key"
    code = "db.duplicate_key"


class StaleVersionError(ConflictError):
    """The row changed since it was read (optimistic locking); re-read and retry."""

    title = "Stale version"
    code = "db.stale_version"


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached in time (connection failure, pool timeout, shutdown)."""

    status = 503
    title = "Database unavailable"
    code = "db.database_unavailable"


class InvalidQueryError(DatabaseError):
    """Client query input (limit, offset, cursor, sort, filter) was rejected before any SQL."""

    status = 400
    title = "Invalid query"
    code = "db.invalid_query"


class ConcurrentSessionUseError(DatabaseError, RuntimeError):
    """Two tasks used one session at the same time; give each task its own session."""

    title = "Concurrent session use"
    code = "db.concurrent_session_use"


class SchemaBehindError(DatabaseUnavailableError):
    """The database schema is older than this code's newest migration: not ready yet.

    Raised by the readiness check of ``saasfw.db.migrations``; run the migrations
    (``saasfw-db upgrade``), or wait for the replica or job running them. A schema *ahead*
    of the code is fine: it is the previous version's pods during a rolling deploy.
    """

    title = "Database schema behind"
    code = "db.schema_behind"


MIGRATE_COMMAND = "saasfw-db upgrade"
"""The command that applies a service's migrations (the ``saasfw-db`` CLI of this package)."""


class SchemaMismatchError(DatabaseError):
    """A table or column the code uses is missing from the database: migrations not applied.

    A deploy fault, not an outage: waiting does not fix it, so it is answered 500 without
    ``Retry-After`` (503 would make clients and proxies retry), and its detail, unlike
    other 5xx details, is public: it names the missing object (a bare identifier, never
    driver text) and the command that fixes it, the same on SQLite and PostgreSQL.

    Attributes:
        kind: ``table`` or ``column``.
        name: the missing table, or ``table.column`` / ``column``; None when the driver's
            message did not name it as a plain identifier.
        command: the migration command named in the detail.
    """

    status = 500
    title = "Database schema mismatch"
    code = "db.schema_mismatch"

    def __init__(self, kind: str, name: str | None, *, command: str = MIGRATE_COMMAND) -> None:
        what = f'has no {kind} "{name}"' if name else f"lacks a {kind} this code uses"
        super().__init__(
            f"The database {what}: its schema does not match this code. "
            f"Run the service's migrations: {command}",
            kind=kind,
            name=name,
            command=command,
        )
        self.kind = kind
        self.name = name
        self.command = command


class TenantScopeError(DatabaseError):
    """A tenant-scoped model was used without a tenant in context, or across tenants.

    Fails closed: without a tenant nothing is read or written. Background jobs that must
    span tenants pass ``execution_options(all_tenants=True)`` explicitly.
    """

    status = 403
    title = "Tenant scope violation"
    code = "db.tenant_scope"


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra to install."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"{module} is required for this feature: install 'saasfw-db[{extra}]'",
            name=module,
        )
        self.extra = extra
