"""The example README's curl walk-through, run verbatim against the README's run command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import ServerStarter

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "examples" / "orders_service" / "README.md"


def walkthrough_script() -> str:
    text = README.read_text("utf-8")
    section = text.split("## Walk-through with curl", 1)[1]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) >= 6, blocks
    return "\n".join(blocks)


def run_command_of(readme: Path) -> str:
    text = readme.read_text("utf-8")
    block = re.search(r"## Run it.*?```sh\n(.*?)```", text, re.S)
    assert block is not None
    return block.group(1).strip()


def user_shell_environment() -> dict[str, str]:
    venv_bin = str(Path(sys.prefix) / "bin")
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin
    )
    return {"PATH": path, "VIRTUAL_ENV": ""}


def test_curl_walkthrough_works_verbatim(
    tmp_path: Path, server_starter: ServerStarter, free_port: int
) -> None:
    command = run_command_of(README)
    assert command == "python3 -m uv run --frozen orders-service"
    server = server_starter(
        ["bash", "-c", command],
        env={
            **user_shell_environment(),
            "SAASFW_HTTP__PORT": str(free_port),
            "SAASFW_DATA_DIR": str(tmp_path / "var"),
        },
        port=free_port,
    )
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough_script()],
        env={**os.environ, "BASE": server.base_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, (out, result.stderr)
    assert '"status":"UP"' in out
    assert re.search(r"created order [0-9a-f-]{36}", out)
    assert '"version":2' in out
    assert '"status":"paid"' in out
    assert "-> HTTP 409" in out
    assert "bob creates: HTTP 403" in out
    assert "dave reads acme order: HTTP 404" in out
    assert "anonymous: HTTP 401" in out
    assert "machine lists orders: HTTP 200" in out
    assert "delete: HTTP 204" in out
    assert "read after delete: HTTP 404" in out
    assert "refresh: HTTP 200" in out
    assert "refresh again: HTTP 401" in out
    assert 'route="/orders"' in out
    assert server.terminate() == 0
