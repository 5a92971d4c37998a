"""``saasfw dev token``: a token the real app accepts in development, refused in production."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from saasfw.app import ServiceSettings, create_app, load_settings
from saasfw.app._cli import main
from saasfw.security import Principal, require

SERVICE = "tokdemo"
BASE_YAML = """\
security:
  rbac:
    roles:
      reader:
        permissions: ["tokdemo:read"]
      admin:
        permissions: ["tokdemo:write"]
        inherits: [reader]
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A service directory, as a developer has it: config/<service>/, working dir there."""
    for name in list(os.environ):
        if name.startswith("SAASFW_"):
            monkeypatch.delenv(name)
    (tmp_path / "config" / SERVICE).mkdir(parents=True)
    (tmp_path / "config" / SERVICE / "base.yaml").write_text(BASE_YAML, "utf-8")
    (tmp_path / "pyproject.toml").write_text(f'[project]\nname = "{SERVICE}"\n', "utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _token(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["dev", "token", *args]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # the token alone, so $(saasfw dev token ...) works
    return out.strip()


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


@pytest.fixture
async def app(project: Path) -> AsyncIterator[FastAPI]:
    """The service as it runs in development, with a route that needs the admin role."""
    router = APIRouter()

    @router.post("/things")
    async def write(
        caller: Annotated[Principal, Depends(require(f"{SERVICE}:write"))],
    ) -> dict[str, object]:
        return {"id": caller.id, "tenant": caller.tenant, "roles": sorted(caller.roles)}

    loaded = load_settings(ServiceSettings, service=SERVICE, env="development")
    application = create_app(loaded.settings, routers=[router])
    async with application.router.lifespan_context(application):
        yield application


async def _post(app: FastAPI, token: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post("/things", headers={"Authorization": f"Bearer {token}"})


async def test_the_token_is_accepted_by_the_app_in_development(
    app: FastAPI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAASFW_ENV", "development")
    # A command line runs outside any event loop: call it from a thread, as a shell would.
    token = await asyncio.to_thread(
        _token, capsys, "--sub", "alice", "--roles", "admin", "--tenant", "t1"
    )
    response = await _post(app, token)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": "alice", "tenant": "t1", "roles": ["admin"]}


async def test_roles_decide_what_the_token_may_do(
    app: FastAPI, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAASFW_ENV", "development")
    reader = await asyncio.to_thread(_token, capsys, "--sub", "bob", "--roles", "reader")
    assert (await _post(app, reader)).status_code == 403
    forged = reader[:-4] + ("AAAA" if not reader.endswith("AAAA") else "BBBB")
    assert (await _post(app, forged)).status_code == 401


def test_ttl_and_claims(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAASFW_ENV", "test")
    token = _token(capsys, "--sub", "carol", "--roles", "admin,reader", "--ttl", "3600")
    claims = _claims(token)
    assert claims["sub"] == "carol"
    assert claims["roles"] == ["admin", "reader"]
    assert claims["iss"] == SERVICE
    assert claims["aud"] == SERVICE
    assert isinstance(claims["exp"], int)
    assert isinstance(claims["iat"], float)
    assert 3590 <= claims["exp"] - claims["iat"] <= 3600
    assert (project / "var" / SERVICE / "dev-secrets.json").is_file()  # the app's own key


@pytest.mark.parametrize("env", ["production", "staging"])
def test_refused_outside_development(
    project: Path, env: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAASFW_ENV", env)
    assert main(["dev", "token", "--sub", "alice", "--roles", "admin"]) == 78
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"refused in the '{env}' environment (SAASFW_ENV)" in captured.err
    assert "SAASFW_ENV=development saasfw dev token" in captured.err
    assert not (project / "var").exists()  # no key read, none generated


def test_unset_environment_is_production(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev", "token", "--sub", "alice"]) == 78
    assert "SAASFW_ENV is not set, and saasfw defaults to production" in capsys.readouterr().err


def test_the_env_file_counts_as_the_app_reads_it(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / ".env").write_text("SAASFW_ENV=production\n", "utf-8")
    assert main(["dev", "token", "--sub", "alice"]) == 78
    assert "SAASFW_ENV in .env" in capsys.readouterr().err
    (project / ".env").write_text("export SAASFW_ENV=development\n", "utf-8")
    assert _claims(_token(capsys, "--sub", "alice"))["sub"] == "alice"


def test_settings_directory_and_service_are_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "settings"
    (elsewhere / "other").mkdir(parents=True)
    (elsewhere / "other" / "base.yaml").write_text(
        "security:\n  tokens:\n    access_ttl: 120\n", "utf-8"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SAASFW_ENV", "development")
    token = _token(capsys, "--sub", "d", "--service", "other", "--settings", str(elsewhere))
    claims = _claims(token)
    assert claims["aud"] == "other"
    assert isinstance(claims["exp"], int)
    assert isinstance(claims["iat"], float)
    assert claims["exp"] - claims["iat"] <= 120  # security.tokens.access_ttl from that directory


def test_bad_settings_are_reported_not_signed(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAASFW_ENV", "development")
    monkeypatch.setenv("SAASFW_SECURITY__TOKENS__ACCESS_TTL", "-5")
    assert main(["dev", "token", "--sub", "alice"]) == 78
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "ACCESS_TTL" in captured.err.upper()


def test_the_installed_command(project: Path) -> None:
    script = Path(sys.executable).parent / "saasfw"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}
    refused = subprocess.run(
        [str(script), "dev", "token", "--sub", "alice"],
        env={**env, "SAASFW_ENV": "production"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 78
    assert refused.stdout == ""
    minted = subprocess.run(
        [str(script), "dev", "token", "--sub", "alice", "--roles", "admin"],
        env={**env, "SAASFW_ENV": "development"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert minted.returncode == 0, minted.stderr
    assert _claims(minted.stdout.strip())["roles"] == ["admin"]


def test_a_services_own_settings_need_its_model(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAASFW_ENV", "development")
    (project / "config" / SERVICE / "development.yaml").write_text("greeting: hi\n", "utf-8")
    assert main(["dev", "token", "--sub", "alice"]) == 78
    err = capsys.readouterr().err
    assert "unknown key 'greeting'" in err
    assert "needs --model" in err
    (project / "own_settings.py").write_text(
        "from saasfw.app import ServiceSettings\n\n\n"
        "class Settings(ServiceSettings):\n    greeting: str = 'hello'\n",
        "utf-8",
    )
    monkeypatch.syspath_prepend(str(project))
    assert _claims(_token(capsys, "--sub", "alice", "--model", "own_settings:Settings"))["sub"]


async def test_development_token_is_refused_outside_development(tmp_path: Path) -> None:
    """The public minting function refuses a production service's settings outright."""
    from saasfw.app import ServiceSettings, development_token
    from saasfw.security import ConfigurationError

    settings = ServiceSettings(service="demo", env="production", data_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="SAASFW_ENV=development"):
        await development_token(settings, "alice", roles=["admin"])
