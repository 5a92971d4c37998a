"""marker: record that this revision ran (a data migration must run exactly once)

It also holds its transaction open for a moment on PostgreSQL, so that replicas starting
together really overlap with it (not a timing assertion: the test counts rows).

Revision ID: m0002
Revises: m0001
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "m0002"
down_revision: str | Sequence[str] | None = "m0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("INSERT INTO migration_runs (revision) VALUES ('m0002')")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT pg_sleep(1)")


def downgrade() -> None:
    op.execute("DELETE FROM migration_runs WHERE revision = 'm0002'")
