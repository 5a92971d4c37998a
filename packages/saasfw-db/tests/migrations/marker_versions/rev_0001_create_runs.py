"""create migration_runs (the marker table counting how often 0002 ran)

Revision ID: m0001
Revises:
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "m0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "migration_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("revision", sa.String(20), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("migration_runs")
