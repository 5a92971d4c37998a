"""SQLAlchemy Core tables of the SQL sink and the outbox (created by the Alembic migration)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

EVENTS_TABLE = "audit_events"
OUTBOX_TABLE = "audit_outbox"
VERSION_TABLE = "saasfw_audit_alembic_version"


def build_tables(schema: str | None = None) -> tuple[MetaData, Table, Table]:
    """The metadata, the events table and the outbox table, in ``schema``."""
    md = MetaData(schema=schema)
    events = Table(
        EVENTS_TABLE,
        md,
        Column("id", String(36), primary_key=True),
        Column("producer", String(200), nullable=False),
        Column("seq", BigInteger, nullable=False),
        Column("ts", DateTime(timezone=True), nullable=False),
        Column("type", String(200), nullable=False),
        Column("action", String(200), nullable=False),
        Column("outcome", String(50), nullable=False),
        Column("actor_id", String(200)),
        Column("actor_kind", String(50)),
        Column("tenant", String(200)),
        Column("address", String(100)),
        Column("resource_type", String(200)),
        Column("resource_id", String(200)),
        Column("correlation_id", String(200)),
        Column("trace_id", String(64)),
        Column("details", Text, nullable=False),
        Column("mac", String(64)),
        Column("record", Text, nullable=False),
        UniqueConstraint("producer", "seq", name="uq_audit_events_producer_seq"),
        Index("ix_audit_events_tenant_ts_id", "tenant", "ts", "id"),
        Index("ix_audit_events_type_ts", "type", "ts"),
        Index("ix_audit_events_correlation_id", "correlation_id"),
    )
    outbox = Table(
        OUTBOX_TABLE,
        md,
        Column(
            "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("payload", Text, nullable=False),
    )
    return md, events, outbox
