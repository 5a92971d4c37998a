"""Building the orders service imports only what serving it needs (issue 11's cold start).

Alembic is imported when the migrations run (at start-up in development, in a separate job
in production), httpx when a downstream client is configured, uvicorn when serving.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BUILD_AND_LIST_MODULES = """
import json, sys
from orders_service._app import build_app, load
build_app(load().settings)
print(json.dumps(sorted(sys.modules)))
"""


def test_building_the_app_imports_no_alembic_httpx_or_uvicorn(tmp_path: Path) -> None:
    env = {**os.environ, "SAASFW_DATA_DIR": str(tmp_path)}
    env.pop("SAASFW_ENV", None)
    done = subprocess.run(
        [sys.executable, "-c", BUILD_AND_LIST_MODULES],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    assert "orders_service._app" in modules
    assert not {"alembic", "httpx", "uvicorn"} & modules
