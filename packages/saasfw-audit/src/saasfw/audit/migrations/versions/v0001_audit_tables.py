"""Create the audit events table and the transactional outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import context, op

from saasfw.audit._tables import build_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = context.config.attributes.get("schema")
    _, events, outbox = build_tables(schema)
    bind = op.get_bind()
    events.create(bind)
    outbox.create(bind)


def downgrade() -> None:
    schema = context.config.attributes.get("schema")
    _, events, outbox = build_tables(schema)
    bind = op.get_bind()
    outbox.drop(bind)
    events.drop(bind)
