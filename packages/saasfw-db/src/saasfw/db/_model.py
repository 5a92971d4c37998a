"""Declarative base and mixins: keys, timestamps, actor audit, soft delete, version, tenant."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, MetaData, String, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from saasfw.db._ids import uuid7
from saasfw.db._types import UtcDateTime, utcnow

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so Alembic can drop what it created on every backend."""


class Base(DeclarativeBase):
    """Declarative base with a naming convention; aware datetimes map to ``UtcDateTime``."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UtcDateTime()}  # noqa: RUF012 - SQLAlchemy API


class UUIDPrimaryKey:
    """``id``: a time-ordered UUID (version 7) generated in Python, native UUID on PostgreSQL."""

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True, default=uuid7)


class BigIntPrimaryKey:
    """``id``: a database-generated 64-bit integer (INTEGER PRIMARY KEY on SQLite)."""

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )


class TimestampMixin:
    """``created_at`` / ``updated_at``: aware UTC timestamps set by the application."""

    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime(), default=utcnow, onupdate=utcnow, nullable=False
    )


class AuditMixin(TimestampMixin):
    """Timestamps plus ``created_by`` / ``updated_by`` filled from the actor port.

    The actor comes from the ``ActorIdProvider`` given to ``Database`` (in saasfw.app: the
    verified principal), never from the client.
    """

    created_by: Mapped[str | None] = mapped_column(String(255), default=None)
    updated_by: Mapped[str | None] = mapped_column(String(255), default=None)


class SoftDeleteMixin:
    """``deleted_at``: rows with a value are hidden from every query of a saasfw session.

    Opt in per statement with ``execution_options(include_deleted=True)`` or the
    repository's ``include_deleted=True``.
    """

    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), default=None, index=True)


class VersionMixin:
    """``version``: optimistic locking; a write against an old version raises StaleVersionError.

    Uses the mapper's ``version_id_col``, so ORM flushes check it; the repository's
    ``update``/``delete`` check it too when given ``expected_version``. A model combining
    this mixin with its own ``__mapper_args__`` must include ``version_id_col`` itself.
    """

    version: Mapped[int] = mapped_column(Integer(), nullable=False, default=1)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class TenantMixin:
    """``tenant_id``: rows belong to one tenant; the tenant port scopes every query.

    Reads see only the current tenant's rows; inserts get the current tenant; writing a
    row of another tenant is refused. Without a tenant in context, nothing is read or
    written (fail closed) unless a statement opts out with
    ``execution_options(all_tenants=True)``.
    """

    tenant_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
