"""The examples' development command, run verbatim: both services in one process, no broker.

The command of projections-service's README ("Run both") starts orders-service and
projections-service with the in-process bus from a user's shell; the README's curl block,
run verbatim against it, creates two orders and reads them back as one customer's totals.
SIGTERM stops both, exit status 0.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "examples" / "projections_service" / "README.md"


def _conftest() -> Any:
    path = str(Path(__file__).with_name("conftest.py"))
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == path:
            return module
    raise LookupError("tests-integration/conftest.py is not loaded")


def _blocks() -> list[str]:
    section = README.read_text("utf-8").split("## Run both", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, re.S)


def test_the_documented_command_is_the_same_everywhere() -> None:
    command = _blocks()[0].strip()
    assert command == "python3 -m uv run --frozen python examples/dev_pair.py"
    for other in ("examples/README.md", "examples/orders_service/README.md"):
        assert f"```text\n{command}\n```" in (ROOT / other).read_text("utf-8"), other


def test_the_dev_pair_runs_from_a_users_shell_and_projects_orders(tmp_path: Path) -> None:
    ct = _conftest()
    run, walkthrough = _blocks()[:2]
    orders_port, projections_port = ct.find_free_port(), ct.find_free_port()
    clean = {k: "" for k in os.environ if k.startswith("SAASFW_")}
    server = ct.start_server(
        ["bash", "-c", run.strip()],
        env={
            **clean,
            **ct.user_shell_environment(),
            "SAASFW_DATA_DIR": str(tmp_path / "var"),
            "ORDERS_PORT": str(orders_port),
            "PROJECTIONS_PORT": str(projections_port),
        },
        port=orders_port,
        log_path=tmp_path / "pair.log",
        ready_timeout=180,
    )
    try:
        # projections-service starts right after orders-service (their migrations one by one).
        deadline = time.monotonic() + 120
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{projections_port}/health/ready", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", walkthrough],
            env={
                **os.environ,
                "ORDERS": f"http://127.0.0.1:{orders_port}",
                "TOTALS": f"http://127.0.0.1:{projections_port}",
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        code = server.terminate(timeout=60)
    out = result.stdout
    assert result.returncode == 0, result.stderr + out
    assert out.count("order: HTTP 201") == 2, out
    assert '"customer_email":"pair@example.com"' in out, out
    assert '"order_count":2,"total_cents":1000' in out, out
    assert code == 0, server.output()
    assert (tmp_path / "var" / "dev-pair-keys.json").stat().st_mode & 0o077 == 0
