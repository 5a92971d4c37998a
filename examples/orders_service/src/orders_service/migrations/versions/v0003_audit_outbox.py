"""audit outbox tables (saasfw_audit_outbox, _keys, _leases): mutations stage their events

The shape of saasfw.core.outbox's ``outbox_tables("saasfw_audit_outbox")``, written out so
this revision stays what it was when the library changes. saasfw.app creates the same
tables at start-up when they are missing (before the service's own lifespan runs these
migrations), so this revision creates them only where they are not there yet: a migration
Job run before the first start, or a database the service never started on.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NAME = "saasfw_audit_outbox"


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table(_NAME):
        return  # made by saasfw.app at start-up, in this very shape
    op.create_table(
        _NAME,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("ordering_key", sa.String(200), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name=f"pk_{_NAME}"),
        sa.UniqueConstraint("message_id", name=f"uq_{_NAME}_message_id"),
    )
    op.create_index(f"ix_{_NAME}_key_seq", _NAME, ["ordering_key", "sequence"])
    op.create_table(
        f"{_NAME}_keys",
        sa.Column("ordering_key", sa.String(200), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("ordering_key", name=f"pk_{_NAME}_keys"),
    )
    op.create_table(
        f"{_NAME}_leases",
        sa.Column("ordering_key", sa.String(200), nullable=False),
        sa.Column("leased_by", sa.String(100), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=False),
        sa.Column("retry_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("ordering_key", name=f"pk_{_NAME}_leases"),
    )


def downgrade() -> None:
    op.drop_table(f"{_NAME}_leases")
    op.drop_table(f"{_NAME}_keys")
    op.drop_index(f"ix_{_NAME}_key_seq", table_name=_NAME)
    op.drop_table(_NAME)
