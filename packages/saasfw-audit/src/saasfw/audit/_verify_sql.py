"""Verify the SQL sink's table: each producer's rows form a hash chain, like the file log.

Every row keeps the exact chained line it was made from (``record``) and its ``mac``, so a
trail kept only in the database is tamper-evident: the verifier re-computes each
producer's chain in sequence order, and checks that the row's searchable columns still
say what the chained line says (an ``UPDATE`` of a column alone is found too).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from saasfw.audit._chain import ChainKey
from saasfw.audit._chaincheck import (
    ChainChecker,
    Checkpoints,
    Entry,
    Finding,
    VerifyReport,
    check_checkpoints,
    load_checkpoints,
)
from saasfw.audit._encoder import split_chained_line
from saasfw.audit._sql import record_row
from saasfw.audit._tables import EVENTS_TABLE

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["verify_sql"]

_COLUMNS = (
    "id",
    "producer",
    "seq",
    "ts",
    "type",
    "action",
    "outcome",
    "actor_id",
    "actor_kind",
    "tenant",
    "address",
    "resource_type",
    "resource_id",
    "correlation_id",
    "trace_id",
    "details",
    "mac",
)


def _same(column: str, stored: Any, expected: Any) -> bool:
    if column == "ts" and isinstance(stored, datetime) and isinstance(expected, datetime):
        if stored.tzinfo is None:  # SQLite keeps no offset; the sink writes UTC
            stored = stored.replace(tzinfo=UTC)
        return bool(stored == expected)
    return bool(stored == expected)


def _row_problem(row: Any, canonical: bytes | None) -> str | None:
    """Why the row's columns disagree with its chained line, or None when they agree."""
    try:
        record = json.loads(row.record)
    except ValueError:
        return "the stored record is not JSON"
    if canonical is None:
        return "the stored record carries no chain mac"
    expected = record_row(record, row.record.encode())
    changed = [c for c in _COLUMNS if not _same(c, getattr(row, c), expected[c])]
    if changed:
        return (
            f"column(s) {', '.join(changed)} differ from the chained record: the row was "
            "altered after it was stored"
        )
    return None


class _SqlScan:
    """Feeds one table's rows, ordered by producer and sequence, to per-producer checkers."""

    def __init__(self, chain: ChainKey, cps: Checkpoints, report: VerifyReport, where: str):
        self.chain = chain
        self.cps = cps
        self.report = report
        self.where = where
        self.checkers: dict[str, ChainChecker] = {}
        self.current: ChainChecker | None = None

    def feed(self, row: Any) -> None:
        self.report.records += 1
        producer, seq = str(row.producer), int(row.seq)
        place = f"{self.where} id={row.id}"
        if self.current is None or self.current.producer != producer:
            if self.current is not None:
                self.current.finish()
            self.current = ChainChecker(
                producer,
                self.chain,
                self.report,
                self.cps.anchors.get(producer, {}),
                self.cps.wanted.get(producer, set()),
            )
            self.checkers[producer] = self.current
        line = str(row.record).encode("utf-8", "replace")
        parts = split_chained_line(line)
        problem = _row_problem(row, parts[0] if parts else None)
        if problem is not None:
            self.report.findings.append(Finding("modified", problem, place, None, seq, producer))
        if parts is None:
            return
        self.current.feed(Entry(place, None, seq, parts[0], parts[1]))

    def finish(self) -> dict[str, ChainChecker]:
        if self.current is not None:
            self.current.finish()
        return self.checkers


async def verify_sql(
    engine: AsyncEngine,
    *,
    chain_key: bytes,
    schema: str | None = None,
    public_key: Any = None,
    checkpoints_paths: Sequence[str | os.PathLike[str]] = (),
    batch_size: int = 2_000,
) -> VerifyReport:
    """Verify the SQL sink's ``audit_events`` table, each producer's chain on its own.

    Rows are streamed in (producer, seq) order, so memory stays bounded. A row whose line
    or mac was altered is ``modified`` (located by its event id and sequence number), a
    re-chained run of rows ``rechained``, a row removed from the middle ``deleted`` (the
    sequence gap). With ``public_key`` the producers' signed checkpoints (written by their
    file sinks) also expose a truncated tail, a re-chained range with the real key, and a
    chain that ends without a final checkpoint (``unterminated``).

    Rows removed by :func:`~saasfw.audit.purge_sql` show as deleted: retention of the
    table is not anchored (the file log's is).

    Args:
        engine: an async engine on the database holding the table.
        chain_key: the HMAC key of the chains.
        schema: the table's schema (PostgreSQL).
        public_key, checkpoints_paths: the checkpoints' Ed25519 public key and files.
        batch_size: rows fetched per round trip.
    """
    from sqlalchemy import select

    from saasfw.audit._tables import build_tables

    report = VerifyReport()
    _, events, _ = build_tables(schema)
    cps = Checkpoints()
    if public_key is not None and checkpoints_paths:
        cps = load_checkpoints(checkpoints_paths, public_key, report)
    where = f"{schema}.{EVENTS_TABLE}" if schema else EVENTS_TABLE
    scan = _SqlScan(ChainKey(chain_key), cps, report, where)
    query = select(*_columns(events)).order_by(events.c.producer, events.c.seq)
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=batch_size))
        async for row in result:
            scan.feed(row)
    checkers = scan.finish()
    if public_key is not None and checkpoints_paths:
        check_checkpoints(checkers, cps, report)
    return report


def _columns(events: Table) -> list[Any]:
    return [events.c[name] for name in (*_COLUMNS, "record")]
