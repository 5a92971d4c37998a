"""The job-runs table: one row per job and period, the lease that lets one replica run it.

The primary key ``(job, period)`` is the whole coordination: the replica whose insert
creates the row runs that period, the others see the conflict and skip it. A row whose run
never finished (its replica died) has a ``lease_until`` in the past, and the next replica
to look takes the period over. The rows double as the run history (status, error, runner).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table

__all__ = ["job_runs_table"]


def job_runs_table(
    name: str = "saasfw_job_runs", *, metadata: MetaData | None = None, schema: str | None = None
) -> Table:
    """Declare the job-runs table; pass the service's ``MetaData`` so migrations create it.

    Times are epoch seconds as floats, like the outbox: leases are compared across
    replicas, and a float means the same everywhere.
    """
    return Table(
        name,
        metadata if metadata is not None else MetaData(),
        Column("job", String(100), primary_key=True),
        Column("period", BigInteger, primary_key=True),
        Column("runner", String(100), nullable=False),
        Column("status", String(20), nullable=False),
        Column("lease_until", Float, nullable=False),
        Column("started_at", Float, nullable=False),
        Column("finished_at", Float, nullable=True),
        Column("attempts", Integer, nullable=False),
        Column("error", String(500), nullable=True),
        Index(f"ix_{name}_started_at", "started_at"),
        schema=schema,
    )
