"""Scheduled jobs on three real replicas (issue 19, acceptance 6): each runs once per period.

Three uvicorn processes of one small service (``_jobs_service.py``) share a PostgreSQL
schema. Its ``tick`` job (every 2 s) writes one row per run, so a period run twice would
show as two rows. Audit retention is on: the SQL purge (the fleet's shared table) must run
once per period too, and audit itself once per run (``audit.retention.purged``); each
replica purges its own file log under its own job name. Every run is audited as
``saasfw.job.run``.
"""

# ruff: noqa: S608 - every statement names this test's own generated schema, never input

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

EVERY = 2.0
PERIODS = 4


def _conftest() -> Any:
    """This directory's conftest module (pytest's importlib mode keeps it off sys.path)."""
    path = str(Path(__file__).with_name("conftest.py"))
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == path:
            return module
    raise LookupError("tests-integration/conftest.py is not loaded")


def _sql(url: str, *statements: str) -> list[list[tuple[Any, ...]]]:
    import asyncpg

    async def run() -> list[list[tuple[Any, ...]]]:
        connection = await asyncpg.connect(url)
        try:
            return [[tuple(r) for r in await connection.fetch(s)] for s in statements]
        finally:
            await connection.close()

    return asyncio.run(run())


def test_a_job_on_three_replicas_runs_once_per_period(tmp_path: Path, postgres_url: str) -> None:
    ct = _conftest()
    schema = f"jobs_fleet_{uuid.uuid4().hex[:10]}"
    _sql(
        postgres_url,
        f'CREATE SCHEMA "{schema}"',
        f'CREATE TABLE "{schema}".ticks (period bigint NOT NULL, runner text NOT NULL)',
    )
    servers = []
    try:
        for index in range(3):
            port = ct.find_free_port()
            env = {
                **{k: "" for k in os.environ if k.startswith("SAASFW_")},
                "SAASFW_ENV": "test",
                "SAASFW_DATA_DIR": str(tmp_path / f"replica{index}"),
                "SAASFW_DB__URL": postgres_url,
                "SAASFW_DB__SCHEMA_NAME": schema,
                "SAASFW_AUDIT__SQL__URL": postgres_url,
                "SAASFW_AUDIT__SQL__SCHEMA_NAME": schema,
                "SAASFW_AUDIT__RETENTION__KEEP_DAYS": "30",
                "SAASFW_AUDIT__RETENTION__EVERY": str(EVERY),
                "SAASFW_HTTP__PORT": str(port),
                "SAASFW_SECURITY__JWT__HMAC_SECRET": "jobs-" + "j" * 24 + "5c8d2e0f",
                "JOBS_TICKS_URL": postgres_url,
                "JOBS_EVERY": str(EVERY),
            }
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                "--app-dir",
                str(Path(__file__).parent),
                "--factory",
                "_jobs_service:build",
                "--port",
                str(port),
            ]
            servers.append(
                ct.start_server(
                    command, env=env, port=port, log_path=tmp_path / f"replica{index}.log"
                )
            )
        # Let every replica see several periods (the ticks table tells how many passed).
        deadline = time.monotonic() + 120
        while True:
            (periods,) = _sql(postgres_url, f'SELECT DISTINCT period FROM "{schema}".ticks')
            if len(periods) >= PERIODS + 1:
                break
            assert time.monotonic() < deadline, "the job did not run for enough periods"
            time.sleep(0.5)
        for server in servers:
            # Plain uvicorn re-raises the SIGTERM it handled, once shut down cleanly.
            assert server.terminate(timeout=60) in (0, -15), server.output()[-3000:]
            assert "Application shutdown complete" in server.output()
        ticks, runs, purges, audited = _sql(
            postgres_url,
            f'SELECT period, runner FROM "{schema}".ticks',
            f'SELECT job, period, status FROM "{schema}".saasfw_job_runs',
            f"SELECT details FROM \"{schema}\".audit_events WHERE type = 'audit.retention.purged'",
            f"SELECT resource_id FROM \"{schema}\".audit_events WHERE type = 'saasfw.job.run'",
        )
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.terminate()
        ct.drop_postgres_schema(postgres_url, schema)

    per_period = Counter(period for period, _ in ticks)
    assert len(per_period) >= PERIODS + 1
    assert set(per_period.values()) == {1}, per_period  # never twice in one period
    runners = {runner for _, runner in ticks}
    print(f"tick: {len(per_period)} periods, {len(ticks)} runs, by {len(runners)} replicas")

    sql_periods = [p for job, p, status in runs if job == "audit-retention:sql"]
    assert len(sql_periods) >= PERIODS
    sql_purges = [d for (d,) in purges if json.loads(d)["sink"] == "sql"]
    # One purge record per run of the SQL purge: no period purged by two replicas (a run
    # stopped by the shutdown between its purge and its row's update stays "running").
    finished = [
        p for job, p, status in runs if job == "audit-retention:sql" and status != "running"
    ]
    assert len(finished) <= len(sql_purges) <= len(sql_periods), (sql_purges, runs)
    file_jobs = {job for job, _, _ in runs if job.startswith("audit-retention:file:")}
    assert len(file_jobs) == 3  # each replica purges its own file log
    succeeded = Counter(job for job, _, status in runs if status == "succeeded")
    audited_runs = Counter(job for (job,) in audited)
    assert audited_runs["tick"] >= succeeded["tick"] - 3  # a replica stopping may miss its last
    assert audited_runs["tick"] <= succeeded["tick"]
