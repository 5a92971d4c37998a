"""Issue 16: replicas starting together run the migrations exactly once (PostgreSQL lock).

Real OS processes, each calling ``upgrade_to_head`` on the same fresh schema, released at
the same moment; the marker revision counts its own runs in a table.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from saasfw.db import DatabaseUnavailableError, DbSettings
from saasfw.db.migrations import migration_lock_key, upgrade_to_head

pytestmark = pytest.mark.postgres
MARKER_VERSIONS = Path(__file__).parent / "migrations" / "marker_versions"
REPLICAS = 3
# Generous limits for a shared 2-core machine: they only stop a hung run, never judge speed.
START_LIMIT = 120.0
RUN_LIMIT = 300.0

REPLICA = """
import logging, sys, time
from pathlib import Path

from saasfw.db import DbSettings
from saasfw.db.migrations import upgrade_to_head

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
url, schema, versions, gate, ready = sys.argv[1:6]
Path(ready).touch()
deadline = time.monotonic() + 120
while not Path(gate).exists():  # every replica waits here, then all start at once
    if time.monotonic() > deadline:
        sys.exit("the start gate never opened")
    time.sleep(0.005)
upgrade_to_head(
    DbSettings(url=url, schema_name=schema),
    service="svc",
    versions_dir=versions,
    create_schema=True,
)
print("ready")
"""


@pytest.fixture
def schema(postgres_url: str) -> Iterator[str]:
    """A schema name nobody created yet (the replicas create it); dropped afterwards."""
    name = f"mlock_{secrets.token_hex(5)}"
    yield name

    async def drop() -> None:
        connection = await asyncpg.connect(postgres_url)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


def start_together(postgres_url: str, schema: str, tmp_path: Path) -> list[subprocess.Popen[str]]:
    script = tmp_path / "replica.py"
    script.write_text(REPLICA)
    gate = tmp_path / "go"
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                postgres_url,
                schema,
                str(MARKER_VERSIONS),
                str(gate),
                str(tmp_path / f"ready-{n}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(REPLICAS)
    ]
    deadline = time.monotonic() + START_LIMIT
    while not all((tmp_path / f"ready-{n}").exists() for n in range(REPLICAS)):
        exited = [p.returncode for p in processes if p.poll() is not None]
        assert not exited, f"a replica exited before the start: {exited}"
        assert time.monotonic() < deadline, "replicas did not start in time"
        time.sleep(0.05)
    gate.touch()
    return processes


def test_three_replicas_starting_together_migrate_exactly_once(
    postgres_url: str, schema: str, tmp_path: Path
) -> None:
    processes = start_together(postgres_url, schema, tmp_path)
    outcomes = []
    for process in processes:
        out, err = process.communicate(timeout=RUN_LIMIT)
        outcomes.append((process.returncode, out, err))
    for code, out, err in outcomes:
        assert code == 0, err
        assert out.strip() == "ready"
        assert "ERROR" not in err, err
        assert "Traceback" not in err, err
    logs = "".join(err for _, _, err in outcomes)
    # Alembic logs each step it runs: every step ran in exactly one replica.
    assert logs.count("Running upgrade  -> m0001") == 1, logs
    assert logs.count("Running upgrade m0001 -> m0002") == 1, logs

    async def read() -> tuple[list[str], int]:
        connection = await asyncpg.connect(postgres_url, server_settings={"search_path": schema})
        try:
            versions = await connection.fetch("SELECT version_num FROM alembic_version")
            runs = await connection.fetchval("SELECT count(*) FROM migration_runs")
            return [row["version_num"] for row in versions], int(runs)
        finally:
            await connection.close()

    versions, runs = asyncio.run(read())
    assert versions == ["m0002"]  # one row, at head
    assert runs == 1  # the marker migration ran once


@pytest.fixture
async def held_lock(postgres_url: str, schema: str) -> AsyncIterator[Any]:
    """Another 'instance' holding the schema's migration lock, on its own connection."""
    connection = await asyncpg.connect(postgres_url)
    await connection.execute("SELECT pg_advisory_lock($1)", migration_lock_key(schema))
    try:
        yield connection
    finally:
        await connection.close()


async def test_a_replica_gives_up_after_lock_timeout_with_a_clear_error(
    postgres_url: str, schema: str, held_lock: Any
) -> None:
    settings = DbSettings(url=postgres_url, schema_name=schema)

    def upgrade() -> None:
        upgrade_to_head(
            settings,
            service="svc",
            versions_dir=MARKER_VERSIONS,
            create_schema=True,
            lock_timeout=0.5,
        )

    with pytest.raises(DatabaseUnavailableError, match="migration lock of schema") as info:
        await asyncio.to_thread(upgrade)
    assert postgres_url not in str(info.value)
    await held_lock.execute("SELECT pg_advisory_unlock($1)", migration_lock_key(schema))
    await asyncio.to_thread(upgrade)  # the lock is free: the run goes through
    await held_lock.execute(f'SET search_path = "{schema}"')
    versions = await held_lock.fetch("SELECT version_num FROM alembic_version")
    assert [row["version_num"] for row in versions] == ["m0002"]
    # The run released its lock: nobody holds it any more.
    assert await held_lock.fetchval("SELECT pg_try_advisory_lock($1)", migration_lock_key(schema))


def test_lock_keys_are_stable_and_per_schema() -> None:
    assert migration_lock_key("orders") == migration_lock_key("orders")
    assert migration_lock_key("orders") != migration_lock_key("billing")
    assert -(2**63) <= migration_lock_key("orders") < 2**63
