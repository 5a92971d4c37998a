"""projection tables: projected_orders, customer_totals, projection_log

The consumer's inbox, dead letters and the outboxes are saasfw's own tables, created at
start-up when missing.

Revision ID: 0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "projected_orders",
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("customer_email", sa.String(254), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", name="pk_projected_orders"),
    )
    op.create_table(
        "customer_totals",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("customer_email", sa.String(254), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("order_count", sa.Integer(), nullable=False),
        sa.Column("total_cents", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "customer_email", "currency", name="pk_customer_totals"),
    )
    op.create_table(
        "projection_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("event_type", sa.String(200), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("correlation_id", sa.String(200), nullable=True),
        sa.Column("actor", sa.String(200), nullable=True),
        sa.Column("applied_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_projection_log"),
    )
    op.create_index("ix_projection_log_event_id", "projection_log", ["event_id"])
    op.create_index("ix_projection_log_order_id", "projection_log", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_projection_log_order_id", table_name="projection_log")
    op.drop_index("ix_projection_log_event_id", table_name="projection_log")
    op.drop_table("projection_log")
    op.drop_table("customer_totals")
    op.drop_table("projected_orders")
