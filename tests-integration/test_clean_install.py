"""A service built with saasfw.app starts on embedded defaults with no optional extra.

Every wheel of the workspace (saasfw-core included) is built as PyPI would see it
(``--no-sources``) and installed into a fresh virtual environment without any extra: no
asyncpg, no redis, no grpcio, no OTLP exporter. A service there must still start, answer
readiness and stop cleanly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import ServerStarter

ROOT = Path(__file__).resolve().parent.parent

SERVICE = """
from fastapi import APIRouter, Depends
from saasfw.app import ServiceSettings, create_app, load_settings, serve
from saasfw.security import public

router = APIRouter(dependencies=[Depends(public)])


@router.get("/hello")
async def hello() -> dict[str, str]:
    return {"message": "hello"}


loaded = load_settings(ServiceSettings, service="bare", default_env="development", config_dir=None)
serve(lambda settings: create_app(settings, routers=[router]), loaded)
"""

PROBE = """
import importlib
found = []
for name in ("asyncpg", "redis", "grpc", "opentelemetry.exporter.otlp"):
    try:
        importlib.import_module(name)
    except ImportError:
        continue
    found.append(name)
print(found)
"""


def _uv() -> list[str]:
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


@pytest.mark.slow
def test_service_starts_without_optional_extras(
    tmp_path: Path, server_starter: ServerStarter, free_port: int
) -> None:
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    subprocess.run(
        [
            *_uv(),
            "build",
            "--all-packages",
            "--no-sources",
            "--wheel",
            "-q",
            "--out-dir",
            str(dist),
        ],
        cwd=ROOT,
        check=True,
    )
    wheels = sorted(str(w) for w in dist.glob("*.whl"))
    assert len(wheels) == len(list(ROOT.glob("packages/*/pyproject.toml"))), wheels
    subprocess.run([*_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*_uv(), "pip", "install", "-q", "--python", str(python), *wheels], check=True)
    probe = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "[]", f"optional modules installed: {probe.stdout}"

    script = tmp_path / "service.py"
    script.write_text(SERVICE, "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAASFW_", "VIRTUAL_ENV"))}
    server = server_starter(
        [str(python), str(script)],
        env={
            **env,
            "SAASFW_HTTP__PORT": str(free_port),
            "SAASFW_DATA_DIR": str(tmp_path / "var"),
        },
        port=free_port,
    )
    assert httpx.get(f"{server.base_url}/hello", timeout=5).json() == {"message": "hello"}
    ready = httpx.get(f"{server.base_url}/health/ready", timeout=5).json()
    assert set(ready["checks"]) == {"database", "audit"}
    assert server.terminate() == 0, server.output()
    assert (tmp_path / "var" / "bare" / "bare.db").exists()
    assert (tmp_path / "var" / "bare" / "audit" / "audit.jsonl").exists()
