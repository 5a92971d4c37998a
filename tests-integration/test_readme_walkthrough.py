"""The example README's curl walk-through, run verbatim against the README's run command."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import ServerProcess

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


def test_example_readme_documents_the_root_readme_command() -> None:
    assert run_command_of(README) == "python3 -m uv run --frozen orders-service"


def test_curl_walkthrough_works_verbatim(readme_server: ServerProcess) -> None:
    server = readme_server
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
    assert re.search(r"^orders\.order\.created alice enc:", out, re.M)
    assert re.search(r"^orders\.order\.created alice buyer@example\.com$", out, re.M)
    assert re.search(r"^orders\.order\.deleted carol -$", out, re.M)
