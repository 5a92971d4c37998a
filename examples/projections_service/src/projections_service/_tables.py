"""The projection's tables: orders as last seen, customers' totals, the apply log, erasures.

Plain SQLAlchemy Core tables; ``migrations/versions`` creates them (the shape here must
match the newest revision).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
)

__all__ = [
    "ERASED_EMAIL",
    "customer_totals",
    "erased_customers",
    "metadata",
    "projected_orders",
    "projection_log",
]

ERASED_EMAIL = "<erased>"
"""What an erased customer's orders and totals show instead of the address (as in orders)."""

metadata = MetaData()

projected_orders = Table(
    "projected_orders",
    metadata,
    Column("order_id", String(64), nullable=False),
    Column("tenant", String(64), nullable=False),
    Column("customer_email", String(254), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_cents", BigInteger(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("deleted", Boolean(), nullable=False),
    Column("updated_at", Float(), nullable=False),
    PrimaryKeyConstraint("order_id", name="pk_projected_orders"),
)
"""One row per order: what its last applied event said (deleted orders stay, flagged)."""

customer_totals = Table(
    "customer_totals",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("customer_email", String(254), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("order_count", Integer(), nullable=False),
    Column("total_cents", BigInteger(), nullable=False),
    Column("updated_at", Float(), nullable=False),
    PrimaryKeyConstraint("tenant", "customer_email", "currency", name="pk_customer_totals"),
)
"""The projection itself: live orders and their sum, per tenant, customer and currency."""

projection_log = Table(
    "projection_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("event_id", String(64), nullable=False, index=True),
    Column("event_type", String(200), nullable=False),
    Column("order_id", String(64), nullable=False, index=True),
    Column("sequence", BigInteger(), nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("correlation_id", String(200), nullable=True),
    Column("actor", String(200), nullable=True),
    Column("applied_at", Float(), nullable=False),
)
"""One row per event applied, in the transaction that applied it (no unique key on purpose:
an event applied twice would show as two rows). Operators read it to trace an update."""

erased_customers = Table(
    "erased_customers",
    metadata,
    Column("tenant", String(64), nullable=False),
    Column("email_digest", String(64), nullable=False),
    Column("erased_at", Float(), nullable=False),
    PrimaryKeyConstraint("tenant", "email_digest", name="pk_erased_customers"),
)
"""Customers erased upstream, by a SHA-256 of the address (never the address): an event
made before the erasure but delivered after it (another ordering key) is applied under
``<erased>`` instead of bringing the address back."""
