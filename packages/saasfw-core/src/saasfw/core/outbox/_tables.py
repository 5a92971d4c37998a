"""The outbox's three tables: staged messages, per-key sequence counters, and relay leases.

- ``<name>``: one row per staged message, deleted once delivered.
- ``<name>_keys``: one row per ordering key, handing out the per-key sequence number. The
  staging upsert increments it, so two transactions staging for one key serialise on that
  row and the numbers follow commit order.
- ``<name>_leases``: one row per key a relay is delivering (or backing off on). It is kept
  apart from the counters so that a relay renewing its lease never waits on a business
  transaction that is staging for the same key, and vice versa.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

__all__ = ["MAX_KEY_LENGTH", "OutboxTables", "outbox_tables"]

MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class OutboxTables:
    """The tables of one outbox."""

    messages: Table
    keys: Table
    leases: Table


def outbox_tables(
    name: str = "saasfw_outbox", *, metadata: MetaData | None = None, schema: str | None = None
) -> OutboxTables:
    """Declare the outbox tables ``<name>``, ``<name>_keys`` and ``<name>_leases``.

    Pass the service's own ``MetaData`` so its migrations create them, or leave it out and
    call ``tables.messages.metadata.create_all`` for a quick start. Times are epoch seconds
    as floats: leases are compared across replicas, and a float means the same everywhere.
    """
    metadata = metadata if metadata is not None else MetaData()
    messages = Table(
        name,
        metadata,
        Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
        Column("message_id", String(64), nullable=False, unique=True),
        Column("ordering_key", String(MAX_KEY_LENGTH), nullable=False),
        Column("sequence", BigInteger, nullable=False),
        Column("type", String(200), nullable=False),
        Column("payload", Text, nullable=False),
        Column("headers", Text, nullable=False),
        Column("created_at", Float, nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", String(500), nullable=True),
        Index(f"ix_{name}_key_seq", "ordering_key", "sequence"),
        schema=schema,
    )
    keys = Table(
        f"{name}_keys",
        metadata,
        Column("ordering_key", String(MAX_KEY_LENGTH), primary_key=True),
        Column("last_sequence", BigInteger, nullable=False),
        Column("updated_at", Float, nullable=False),
        schema=schema,
    )
    leases = Table(
        f"{name}_leases",
        metadata,
        Column("ordering_key", String(MAX_KEY_LENGTH), primary_key=True),
        Column("leased_by", String(100), nullable=False),
        Column("lease_until", Float, nullable=False),
        Column("retry_at", Float, nullable=False),
        schema=schema,
    )
    return OutboxTables(messages=messages, keys=keys, leases=leases)
