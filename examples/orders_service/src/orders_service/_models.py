"""The orders tables: tenant-scoped, versioned, soft-deleted, stamped with the actor."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from saasfw.db import (
    AuditMixin,
    Base,
    Repository,
    SoftDeleteMixin,
    SortKey,
    TenantMixin,
    UUIDPrimaryKey,
    VersionMixin,
)

__all__ = ["Order", "OrderRepository"]

ORDER_STATUSES = ("open", "paid", "shipped", "cancelled")


class Order(UUIDPrimaryKey, AuditMixin, SoftDeleteMixin, VersionMixin, TenantMixin, Base):
    """One customer order of one tenant."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_cents >= 0", name="price_not_negative"),
    )

    customer_email: Mapped[str] = mapped_column(String(254), nullable=False)
    sku: Mapped[str] = mapped_column(String(64), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer(), nullable=False)
    unit_price_cents: Mapped[int] = mapped_column(Integer(), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open", index=True)
    note: Mapped[str | None] = mapped_column(String(500), default=None)


class OrderRepository(Repository[Order]):
    """Orders as clients may query them: filter by status or SKU, sort by time or SKU."""

    model = Order
    filterable = frozenset({"status", "sku"})
    sortable = frozenset({"created_at", "updated_at", "sku"})
    default_sort = (SortKey("created_at", descending=True),)
