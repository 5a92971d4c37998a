"""saasfw.testing, the pytest plugin, as a service's own test suite uses it.

Each test writes a small service project (an app factory, settings YAML with roles, a
migration) and runs pytest on it in a fresh interpreter, the way the project's developer
does, with the plugin named by ``-p`` (an installed wheel loads it through its ``pytest11``
entry point; this workspace's editable install may predate that entry point).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jwt
import pytest

from saasfw.app import ServiceSettings, create_app
from saasfw.testing import SaasfwTestingError, TokenMinter

APP = """
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from saasfw.app import AuditTrail, DbSession, ServiceSettings, create_app, current_settings
from saasfw.audit import Resource
from saasfw.db import Base, BigIntPrimaryKey
from saasfw.security import Principal, require


class Settings(ServiceSettings):
    greeting: str = "hello"


class Thing(BigIntPrimaryKey, Base):
    __tablename__ = "things"
    name: Mapped[str] = mapped_column(String(100))


class NewThing(BaseModel):
    name: str


router = APIRouter()


@router.post("/things", status_code=201)
async def create(
    body: NewThing,
    session: DbSession,
    trail: AuditTrail,
    caller: Annotated[Principal, Depends(require("things:write"))],
) -> dict[str, object]:
    thing = Thing(name=body.name)
    session.add(thing)
    await session.flush()
    assert trail is not None
    await trail.stage(session, "thing.created", resource=Resource("thing", str(thing.id)))
    return {"id": thing.id, "by": caller.id}


@router.get("/things/count")
async def count(
    session: DbSession, caller: Annotated[Principal, Depends(require("things:read"))]
) -> dict[str, object]:
    return {"count": await session.scalar(select(func.count()).select_from(Thing))}


@router.get("/whoami")
async def whoami(
    settings: Annotated[Settings, Depends(current_settings)],
    caller: Annotated[Principal, Depends(require("things:read"))],
) -> dict[str, object]:
    return {
        "greeting": settings.greeting,
        "env": settings.env,
        "data_dir": str(settings.data_dir),
        "tenant": caller.tenant,
    }


def build(settings: ServiceSettings):
    return create_app(settings, routers=[router], migrations=Path(__file__).parent / "versions")
"""

MIGRATION = '''
"""things

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "things",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("things")
'''

ROLES = """
security:
  rbac:
    roles:
      reader:
        permissions: ["things:read"]
      writer:
        permissions: ["things:write"]
        inherits: [reader]
"""

PYPROJECT = """
[project]
name = "things"
version = "0.1.0"

[tool.pytest.ini_options]
pythonpath = ["."]
saasfw_app = "app:build"
saasfw_settings_model = "app:Settings"
addopts = ["--strict-config", "-p", "saasfw.testing"]
filterwarnings = ["error"]
"""

USER_TESTS = """
import json
from pathlib import Path

import pytest


def test_writer_creates_and_the_write_is_audited(saasfw_client, saasfw_token, saasfw_app):
    token = saasfw_token("alice", roles=["writer"])
    response = saasfw_client.post(
        "/things", json={"name": "x"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text
    assert response.json() == {"id": 1, "by": "alice"}
    reader = saasfw_token("bob", roles=["reader"])
    denied = saasfw_client.post(
        "/things", json={"name": "y"}, headers={"Authorization": f"Bearer {reader}"}
    )
    assert denied.status_code == 403
    counted = saasfw_client.get("/things/count", headers={"Authorization": f"Bearer {reader}"})
    assert counted.json() == {"count": 1}
    assert saasfw_client.post("/things", json={"name": "z"}).status_code == 401


def test_each_test_has_its_own_data_dir_and_the_test_env(saasfw_client, saasfw_token, tmp_path):
    token = saasfw_token("carol", roles=["reader"], tenant="acme")
    body = saasfw_client.get("/whoami", headers={"Authorization": f"Bearer {token}"}).json()
    assert body["env"] == "test"
    assert Path(body["data_dir"]).is_relative_to(tmp_path)
    assert body["tenant"] == "acme"
    assert body["greeting"] == "hello"


class TestWithOverrides:
    @pytest.fixture
    def saasfw_app(self, saasfw_settings):
        from app import build

        return build(saasfw_settings(greeting="bonjour", http__port=9123))

    def test_overrides_reach_the_app(self, saasfw_client, saasfw_token, saasfw_app):
        token = saasfw_token("dave", roles=["reader"])
        body = saasfw_client.get("/whoami", headers={"Authorization": f"Bearer {token}"}).json()
        assert body["greeting"] == "bonjour"
        assert saasfw_app.state.saasfw_settings.http.port == 9123


def test_a_token_of_another_key_is_refused(saasfw_client, saasfw_settings):
    from saasfw.testing import TokenMinter

    elsewhere = saasfw_settings(security__jwt__hmac_secret="x" * 48)
    token = TokenMinter(elsewhere)("mallory", roles=["writer"])
    refused = saasfw_client.post(
        "/things", json={"name": "x"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status_code == 401
"""


def _project(root: Path, pyproject: str = PYPROJECT) -> Path:
    (root / "config" / "things").mkdir(parents=True)
    (root / "versions").mkdir()
    (root / "tests").mkdir()
    (root / "app.py").write_text(APP, "utf-8")
    (root / "versions" / "0001_things.py").write_text(MIGRATION, "utf-8")
    (root / "config" / "things" / "base.yaml").write_text(ROLES, "utf-8")
    (root / "pyproject.toml").write_text(pyproject, "utf-8")
    return root


def _pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAASFW_", "PYTEST_"))}
    env["SAASFW_ENV"] = "production"  # the plugin must not follow the shell's environment
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_services_own_suite_passes_with_the_plugin(tmp_path: Path) -> None:
    project = _project(tmp_path / "things")
    (project / "tests" / "test_things.py").write_text(USER_TESTS, "utf-8")
    result = _pytest(project)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "4 passed" in result.stdout, result.stdout[-2000:]


def test_a_failing_user_test_fails(tmp_path: Path) -> None:
    """The fixtures are real: a wrong expectation about the roles is a red test."""
    project = _project(tmp_path / "things")
    (project / "tests" / "test_wrong.py").write_text(
        textwrap.dedent(
            """
            def test_reader_writes(saasfw_client, saasfw_token):
                token = saasfw_token("bob", roles=["reader"])
                headers = {"Authorization": f"Bearer {token}"}
                response = saasfw_client.post("/things", json={"name": "x"}, headers=headers)
                assert response.status_code == 201
            """
        ),
        "utf-8",
    )
    result = _pytest(project)
    assert result.returncode == 1, result.stdout[-4000:]
    assert "1 failed" in result.stdout, result.stdout[-3000:]
    assert "assert 403 == 201" in result.stdout, result.stdout[-3000:]


def test_without_an_app_factory_the_error_says_what_to_set(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace('saasfw_app = "app:build"\n', "")
    project = _project(tmp_path / "things", pyproject)
    (project / "tests" / "test_app.py").write_text(
        "def test_client(saasfw_client):\n    pass\n", "utf-8"
    )
    result = _pytest(project)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "set saasfw_app = 'module:factory'" in result.stdout, result.stdout[-3000:]


def test_tokens_are_never_minted_outside_development_and_test(tmp_path: Path) -> None:
    settings = ServiceSettings.model_validate(
        {"service": "things", "env": "production", "data_dir": str(tmp_path)}
    )
    with pytest.raises(SaasfwTestingError, match="only in development or test"):
        TokenMinter(settings)


async def test_a_token_minted_in_an_async_test_verifies_with_the_apps_key(
    tmp_path: Path,
) -> None:
    """Inside a running event loop too; signed with the key the app verifies with."""
    settings = ServiceSettings.model_validate(
        {"service": "things", "env": "test", "data_dir": str(tmp_path)}
    )
    effective = create_app(settings).state.saasfw_settings
    token = TokenMinter(effective)("erin", roles=["reader", "reader"], tenant="acme", ttl=60)
    jwt_settings = effective.security.jwt
    assert jwt_settings.hmac_secret is not None
    claims = jwt.decode(
        token,
        jwt_settings.hmac_secret.get_secret_value(),
        algorithms=["HS256"],
        audience=jwt_settings.audiences[0],
        issuer=jwt_settings.issuer,
    )
    assert claims["sub"] == "erin"
    assert abs(claims["exp"] - claims["iat"] - 60) <= 1
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another key of enough length" * 2, algorithms=["HS256"])
