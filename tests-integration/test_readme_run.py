"""The root README's run command really serves the orders example."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from conftest import ServerStarter

ROOT = Path(__file__).resolve().parent.parent


def readme_run_command() -> str:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "readme_commands.py"), "run"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def user_shell_environment() -> dict[str, str]:
    """The environment of a user's shell: without this test run's virtual environment.

    ``python3`` must be the user's interpreter (the one the README's command installs uv
    into), not the test venv's. An empty value removes the variable.
    """
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin
    )
    return {"PATH": path, "VIRTUAL_ENV": ""}


def test_readme_run_command_serves_the_orders_example(
    tmp_path: Path, server_starter: ServerStarter, free_port: int
) -> None:
    command = readme_run_command()
    assert command.endswith("orders-service")
    server = server_starter(
        ["bash", "-c", command],
        env={
            **user_shell_environment(),
            "SAASFW_HTTP__PORT": str(free_port),
            "SAASFW_DB__DATA_DIR": str(tmp_path / "var"),
        },
        port=free_port,
    )
    ready = httpx.get(f"{server.base_url}/health/ready", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["status"] == "UP"
    openapi = httpx.get(f"{server.base_url}/openapi.json", timeout=5).json()
    assert openapi["info"]["title"] == "Orders service"
    code = server.terminate()
    assert code == 0, server.output()
