"""scripts/check_deploy_env.py: every SAASFW_ variable a deploy asset sets must name a setting."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel, Field, SecretStr

SCRIPTS = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_repo_check_deploy_env", SCRIPTS / "check_deploy_env.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


check = _load()


class Logging(BaseModel):
    level: str = "INFO"


class Observability(BaseModel):
    logging: Logging = Field(default_factory=Logging)


class Db(BaseModel):
    url: SecretStr = SecretStr("sqlite://")


class Settings(BaseModel):
    data_dir: str = "var"
    redis_url: str | None = None
    db: Db = Field(default_factory=Db)
    observability: Observability = Field(default_factory=Observability)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def _assets(level: str, redis: str, docker: str, secret: str, env_file: str) -> dict[str, str]:
    return {
        "deploy/docker-compose.yml": f"""
            services:
              app:
                env_file:
                  - path: ./app.env
                    required: false
                  - ./missing.env
                environment:
                  SAASFW_ENV: development
                  {redis}: redis://redis:6379/0
              worker:
                environment:
                  - SAASFW_DB__URL=postgresql://db/app
                  - PLAIN=1
              db:
                image: postgres
            """,
        "deploy/app.env": f"# comment\nexport {env_file}=/data\nOTHER=1\n",
        "deploy/Dockerfile": f"""
            FROM python
            # ENV SAASFW_COMMENTED=1
            ENV PATH=/x \\
                SAASFW_APP= \\
                {docker}=/data
            ENV SAASFW_OBSERVABILITY__LOGGING__LEVEL INFO
            """,
        "deploy/k8s/app/overlays/prod/configmap.yaml": f"""
            apiVersion: v1
            kind: ConfigMap
            metadata: {{name: app-config}}
            data:
              SAASFW_ENV: production
              {level}: INFO
            """,
        "deploy/k8s/app/base/resources.yaml": f"""
            apiVersion: v1
            kind: Secret
            metadata: {{name: app-secrets}}
            stringData:
              {secret}: postgresql://u:p@db/app
            ---
            apiVersion: batch/v1
            kind: CronJob
            metadata: {{name: nightly}}
            spec:
              jobTemplate:
                spec:
                  template:
                    spec:
                      containers:
                        - name: job
                          env:
                            - name: SAASFW_DATA_DIR
                              value: /data
                            - name: HOME
                              value: /tmp
            """,
    }


def test_assets_that_set_only_real_settings_pass(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        _assets(
            "SAASFW_OBSERVABILITY__LOGGING__LEVEL",
            "SAASFW_REDIS_URL",
            "SAASFW_DATA_DIR",
            "SAASFW_DB__URL",
            "SAASFW_DATA_DIR",
        ),
    )
    found = check.collect(root)
    assert "SAASFW_APP" in found  # collected, but a foreign variable: never flagged
    assert "SAASFW_COMMENTED" not in found
    assert "PLAIN" not in found
    assert found["SAASFW_DATA_DIR"] == [
        "deploy/app.env:2",
        "deploy/Dockerfile:3 (ENV)",
        "deploy/k8s/app/base/resources.yaml (CronJob nightly env)",
    ]
    assert check.problems(root, Settings) == []


def test_each_stray_variable_is_listed_with_where_it_is_set(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        _assets(
            "SAASFW_LOG_LEVEL",
            "SAASFW_REDIS",
            "SAASFW_DATADIR",
            "SAASFW_DB__URI",
            "SAASFW_DATA_DRI",
        ),
    )
    lines = check.problems(root, Settings)
    assert len(lines) == 5
    text = "\n".join(lines)
    assert (
        "SAASFW_LOG_LEVEL: SAASFW_LOG_LEVEL is not a setting; did you mean "
        "SAASFW_OBSERVABILITY__LOGGING__LEVEL?\n"
        "    set in: deploy/k8s/app/overlays/prod/configmap.yaml (ConfigMap app-config data)"
    ) in text
    assert "did you mean SAASFW_REDIS_URL?\n    set in: deploy/docker-compose.yml " in text
    assert "SAASFW_DATADIR: " in text
    assert "deploy/Dockerfile:3 (ENV)" in text
    assert "SAASFW_DB__URI does not name a field (did you mean SAASFW_DB__URL?)" in text
    assert "deploy/k8s/app/base/resources.yaml (Secret app-secrets stringData)" in text
    assert "SAASFW_DATA_DRI: " in text
    assert "deploy/app.env:2" in text


def test_main_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path / "bad", {"deploy/docker-compose.yml": _compose("SAASFW_DATADIR")})
    _tree(tmp_path / "good", {"deploy/docker-compose.yml": _compose("SAASFW_DATA_DIR")})
    model = f"{__name__}:Settings"
    assert check.main(["--root", str(root), "--model", model]) == 1
    err = capsys.readouterr().err
    assert "SAASFW_DATADIR: SAASFW_DATADIR is not a setting; did you mean SAASFW_DATA_DIR?" in err
    assert "1 SAASFW_ variable(s) name no setting" in err
    assert check.main(["--root", str(tmp_path / "good"), "--model", model]) == 0
    assert "every SAASFW_ variable" in capsys.readouterr().out


def _compose(name: str) -> str:
    return f"services:\n  app:\n    environment:\n      {name}: /data\n"


def test_the_repository_deploy_assets_pass() -> None:
    # The example's compose file, Dockerfile and rendered manifests set only real settings.
    from orders_service._settings import OrdersSettings

    root = SCRIPTS.parent
    found = check.collect(root)
    assert {"SAASFW_DB__URL", "SAASFW_HTTP__HOST", "SAASFW_OBSERVABILITY__LOGGING__LEVEL"} <= set(
        found
    )
    assert check.problems(root, OrdersSettings) == []
