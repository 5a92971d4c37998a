"""A user's model whose table was never created, in a real uvicorn process (issue 20).

A tiny service made with the umbrella's ``create_app`` and its own model, on SQLite and on
PostgreSQL:

- the request answers at once 500 ``db.schema_mismatch`` whose detail names the table and
  the migration command, word for word the same on both backends, without ``Retry-After``;
  the statement reached the database once (the app counts what reaches the driver), and
  the log has one line for it: no traceback, no SQL, no parameter;
- with ``SAASFW_DB__MIGRATE_ON_START=false`` the service starts but is not ready while
  its schema is behind; once the separate step (``saasfw-db upgrade``, as the rendered
  Kubernetes Job runs it) has migrated, it turns ready and serves.

The schema readiness check is registered by the app's own lifespan here, with the one line
the umbrella is to run itself (``registry.add("schema", await prepare_schema(...))``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.slow]

PARAMETER = "p4ram-" + "9f3b1c"  # a SQL parameter value that must never reach a log
COMMAND = "saasfw-db upgrade"
DETAIL = (
    'The database has no table "widgets": its schema does not match this code. '
    f"Run the service's migrations: {COMMAND}"
)

APP = '''
"""A user's service: one model, one route, the umbrella's create_app."""

import os
import re
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends
from sqlalchemy import String, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, mapped_column

from saasfw.app import (
    DbSession,
    ServiceSettings,
    create_app,
    database,
    health_registry,
    load_settings,
    singletons_of,
)
from saasfw.db import Base, BigIntPrimaryKey
from saasfw.security import public


class Widget(BigIntPrimaryKey, Base):
    __tablename__ = "widgets"
    name: Mapped[str] = mapped_column(String(50))


ATTEMPTS = []


@event.listens_for(Engine, "before_cursor_execute")
def _count(connection, cursor, statement, *args):
    if re.search(r"FROM widgets(\\s|$)", statement):  # not the schema widgets_it_...
        ATTEMPTS.append(statement)


router = APIRouter(dependencies=[Depends(public)])


@router.get("/widgets")
async def widgets(session: DbSession) -> list[str]:
    rows = await session.scalars(select(Widget).where(Widget.name != os.environ["PARAMETER"]))
    return [row.name for row in rows]


@router.get("/attempts")
async def attempts() -> list[str]:
    return ATTEMPTS


@asynccontextmanager
async def lifespan(app):
    versions = os.environ.get("WIDGETS_VERSIONS")
    if versions:
        from saasfw.db.migrations import prepare_schema

        store = singletons_of(app)
        db = store.get(database)
        # The umbrella's line to be: migrate (migrate_on_start) or only check, then readiness.
        store.get(health_registry).add(
            "schema", await prepare_schema(db, versions_dir=versions, create_schema=True)
        )
    yield


settings = load_settings(
    ServiceSettings, service="widgets", default_env="test", config_dir=os.environ["CONFIG"]
)
app = create_app(settings, routers=[router], lifespan=lifespan)
'''

REVISION = '''"""create widgets

Revision ID: w0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "w0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "widgets",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.String(50), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("widgets")
'''

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


def _environment(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    (tmp_path / "config").mkdir()
    (tmp_path / "widgets_app.py").write_text(APP)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")},
        "SAASFW_ENV": "test",
        "SAASFW_DATA_DIR": str(tmp_path / "var"),
        "CONFIG": str(tmp_path / "config"),
        "PARAMETER": PARAMETER,
    }
    if backend == "postgres":
        env["SAASFW_DB__URL"] = request.getfixturevalue("postgres_url")
        env["SAASFW_DB__SCHEMA_NAME"] = f"widgets_it_{uuid.uuid4().hex[:10]}"
    return env


@contextmanager
def _serve(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """The app under ``saasfw-k8s serve`` (uvicorn), up once its liveness probe answers."""
    port = _free_port()
    log = tmp_path / "server.log"
    command = [str(Path(sys.prefix) / "bin" / "saasfw-k8s"), "serve", "widgets_app:app"]
    command += ["--app-dir", str(tmp_path), "--port", str(port), "--host", "127.0.0.1"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"not live after 60 s:\n{log.read_text()}")
        yield base, log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        if "SAASFW_DB__SCHEMA_NAME" in env:
            _drop_schema(env["SAASFW_DB__URL"], env["SAASFW_DB__SCHEMA_NAME"])


def _wait_for_status(url: str, status: int, deadline_s: float = 30.0) -> httpx.Response:
    deadline = time.monotonic() + deadline_s
    response = httpx.get(url, timeout=5)
    while response.status_code != status and time.monotonic() < deadline:
        time.sleep(0.2)
        response = httpx.get(url, timeout=5)
    return response


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_missing_table_names_itself_and_the_command_once(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    env = _environment(tmp_path, backend, request)
    with _serve(tmp_path, env) as (base, log):
        assert _wait_for_status(f"{base}/health/ready", 200).status_code == 200
        response = httpx.get(f"{base}/widgets", timeout=30)
        assert response.status_code == 500, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "retry-after" not in response.headers  # a deploy fault: nothing to wait for
        body = response.json()
        assert body["code"] == "db.schema_mismatch"
        assert body["detail"] == DETAIL  # the same words on SQLite and PostgreSQL
        seen = httpx.get(f"{base}/attempts", timeout=5).json()
        assert len(seen) == 1, seen  # asked once, no retry
        output = log.read_text()
    lines = [line for line in output.splitlines() if "schema mismatch" in line]
    assert len(lines) == 1, output
    assert "widgets" in lines[0]
    assert COMMAND in lines[0]
    assert "Traceback" not in output
    assert PARAMETER not in output
    assert "SELECT" not in output


@pytest.mark.parametrize("backend", BACKENDS)
def test_behind_schema_is_not_ready_until_the_migration_step_ran(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    env = _environment(tmp_path, backend, request)
    versions = tmp_path / "versions"
    versions.mkdir()
    (versions / "w0001_create_widgets.py").write_text(REVISION)
    env["WIDGETS_VERSIONS"] = str(versions)
    env["SAASFW_DB__MIGRATE_ON_START"] = "false"  # what the rendered Deployment sets
    with _serve(tmp_path, env) as (base, log):
        ready = httpx.get(f"{base}/health/ready", timeout=10)
        assert ready.status_code == 503, ready.text
        schema = ready.json()["checks"]["schema"]
        assert schema["status"] == "DOWN"
        assert schema["error"] == "SchemaBehindError"
        assert httpx.get(f"{base}/widgets", timeout=30).json()["detail"] == DETAIL

        # The separate step, as the Job runs it: same settings, the CLI, its own process.
        step = subprocess.run(
            [str(Path(sys.prefix) / "bin" / "saasfw-db"), "upgrade"],
            env={**env, "SAASFW_SERVICE_NAME": "widgets", "SAASFW_DB_MIGRATIONS": str(versions)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert step.returncode == 0, step.stderr
        ready = _wait_for_status(f"{base}/health/ready", 200)
        assert ready.status_code == 200, ready.text
        served = httpx.get(f"{base}/widgets", timeout=30)
        assert served.status_code == 200, served.text
        assert served.json() == []
        assert "behind" in log.read_text()  # the start-up said why it is not ready
