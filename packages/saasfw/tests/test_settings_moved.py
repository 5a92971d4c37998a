"""``tokens`` and ``request_limits`` live under ``security``; the old names load, with a warning.

Both spellings go through the real loader (YAML files, environment variables) and the
old one must reach the running app, not only the model.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, Depends, Request

from saasfw.app import ComponentSwitches, ServiceSettings, create_app, load_settings
from saasfw.security import public

SERVICE = "moved-svc"
MOVED = r"moved to 'security\.(tokens|request_limits)' in saasfw 0\.3\.0"


def _load(tmp_path: Path, environ: dict[str, str], yaml: str | None = None) -> ServiceSettings:
    config = tmp_path / "config"
    (config / SERVICE).mkdir(parents=True, exist_ok=True)
    if yaml is not None:
        (config / SERVICE / "base.yaml").write_text(yaml, "utf-8")
    loaded = load_settings(
        ServiceSettings,
        service=SERVICE,
        env="test",
        config_dir=config,
        env_file=None,
        secrets_dir=None,
        environ={"SAASFW_DATA_DIR": str(tmp_path), **environ},
    )
    return loaded.settings


def _assert_moved(settings: ServiceSettings) -> None:
    assert settings.security.tokens.access_ttl == 60
    assert settings.security.request_limits.max_body_bytes == 2048


def _no_warnings() -> warnings.catch_warnings[list[warnings.WarningMessage]]:
    return warnings.catch_warnings(record=True)


def test_new_spelling_in_the_environment_loads_without_a_warning(tmp_path: Path) -> None:
    with _no_warnings() as caught:
        warnings.simplefilter("always")
        settings = _load(
            tmp_path,
            {
                "SAASFW_SECURITY__TOKENS__ACCESS_TTL": "60",
                "SAASFW_SECURITY__REQUEST_LIMITS__MAX_BODY_BYTES": "2048",
            },
        )
    assert [str(w.message) for w in caught] == []
    _assert_moved(settings)


def test_new_spelling_in_yaml_loads_without_a_warning(tmp_path: Path) -> None:
    yaml = "security:\n  tokens:\n    access_ttl: 60\n  request_limits:\n    max_body_bytes: 2048\n"
    with _no_warnings() as caught:
        warnings.simplefilter("always")
        settings = _load(tmp_path, {}, yaml)
    assert [str(w.message) for w in caught] == []
    _assert_moved(settings)


def test_old_spelling_in_the_environment_still_loads_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {"SAASFW_TOKENS__ACCESS_TTL": "60", "SAASFW_REQUEST_LIMITS__MAX_BODY_BYTES": "2048"}
    with (
        caplog.at_level(logging.WARNING, "saasfw.app"),
        pytest.warns(DeprecationWarning, match=MOVED) as got,
    ):
        settings = _load(tmp_path, environ)
    _assert_moved(settings)
    messages = sorted(str(w.message) for w in got)
    assert len(messages) == 2
    assert "'request_limits' moved to 'security.request_limits'" in messages[0]
    assert "SAASFW_SECURITY__REQUEST_LIMITS__*" in messages[0]
    assert "'tokens' moved to 'security.tokens'" in messages[1]
    logged = [r.getMessage() for r in caplog.records if r.name == "saasfw.app"]
    assert sorted(logged) == messages


def test_old_spelling_in_yaml_still_loads_and_warns(tmp_path: Path) -> None:
    yaml = "tokens:\n  access_ttl: 60\nrequest_limits:\n  max_body_bytes: 2048\n"
    with pytest.warns(DeprecationWarning, match=MOVED):
        settings = _load(tmp_path, {}, yaml)
    _assert_moved(settings)
    assert settings.security.tokens.refresh_ttl == 14 * 86_400.0  # the rest: defaults


def test_the_new_path_wins_a_key_set_under_both(tmp_path: Path) -> None:
    yaml = "tokens:\n  access_ttl: 60\n  refresh_ttl: 7200\n"
    with pytest.warns(DeprecationWarning, match=MOVED):
        settings = _load(tmp_path, {"SAASFW_SECURITY__TOKENS__ACCESS_TTL": "30"}, yaml)
    assert settings.security.tokens.access_ttl == 30  # the new spelling
    assert settings.security.tokens.refresh_ttl == 7200  # kept from the old one


def test_an_invalid_value_under_the_old_name_is_still_refused(tmp_path: Path) -> None:
    from saasfw.config import ConfigError

    with pytest.warns(DeprecationWarning, match=MOVED), pytest.raises(ConfigError) as refused:
        _load(tmp_path, {"SAASFW_TOKENS__ACCESS_TTL": "-5"})
    assert "access_ttl" in str(refused.value)


def test_reading_the_old_attribute_warns_and_reads_the_new_section() -> None:
    settings = ServiceSettings(security={"tokens": {"access_ttl": 42}})  # type: ignore[arg-type]
    with pytest.warns(DeprecationWarning, match=r"settings\.security\.tokens"):
        assert settings.tokens.access_ttl == 42
    with pytest.warns(DeprecationWarning, match=r"settings\.security\.request_limits"):
        assert settings.request_limits is settings.security.request_limits


def test_keyword_arguments_with_the_old_name_move_too() -> None:
    with pytest.warns(DeprecationWarning, match=MOVED):
        settings = ServiceSettings(request_limits={"max_body_bytes": 2048})  # type: ignore[call-arg]
    assert settings.security.request_limits.max_body_bytes == 2048
    assert "request_limits" not in settings.model_dump()
    assert settings.model_dump()["security"]["request_limits"]["max_body_bytes"] == 2048


async def test_the_old_spelling_reaches_the_running_app(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match=MOVED):
        settings = _load(tmp_path, {"SAASFW_REQUEST_LIMITS__MAX_BODY_BYTES": "512"})
    settings = settings.model_copy(
        update={
            "components": ComponentSwitches(
                database=False, audit=False, observability=False, rate_limiting=False
            )
        }
    )
    router = APIRouter(dependencies=[Depends(public)])

    @router.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    app = create_app(settings, routers=[router])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        small = await client.post("/echo", content=b"x" * 500)
        assert small.status_code == 200, small.text
        assert small.json() == {"size": 500}
        big = await client.post("/echo", content=b"x" * 600)
        assert big.status_code == 413
        assert big.headers["content-type"].startswith("application/problem+json")
