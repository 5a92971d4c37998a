"""Every start-up problem ends as one report and exit 78, never a traceback (issue 18).

The example is started the two ways a user starts it (its console script and
``python -m``) with settings that fail at different stages: while the settings load, while
the app is built, and while the lifespan starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECRET_PASSWORD = "Zq7" + "x" * 30

CASES = {
    "bad value": ({"SAASFW_HTTP__PORT": "eighty"}, "http.port"),
    "short secret": ({"SAASFW_SECURITY__JWT__HMAC_SECRET": "tooshort"}, "HMAC secret"),
    "malformed redis url": ({"SAASFW_REDIS_URL": "redis://:x:bad:port/0"}, "redis_url"),
    "mixed algorithms": (
        {"SAASFW_SECURITY__JWT__ALGORITHMS": '["HS256","RS256"]'},
        "one key family",
    ),
    "database unreachable": (
        {"SAASFW_DB__URL": f"postgresql://app:{SECRET_PASSWORD}@127.0.0.1:1/orders"},
        "database",
    ),
}


def _commands() -> dict[str, list[str]]:
    return {
        "console script": [str(Path(sys.prefix) / "bin" / "orders-service")],
        "python -m": [sys.executable, "-m", "orders_service"],
    }


@pytest.mark.parametrize("entry", ["console script", "python -m"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_failed_start_is_one_report_and_exit_78(tmp_path: Path, entry: str, case: str) -> None:
    variables, named = CASES[case]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")},
        "SAASFW_ENV": "development",
        "SAASFW_DATA_DIR": str(tmp_path),
        "SAASFW_CONFIG_DIR": str(ROOT / "examples" / "orders_service" / "config"),
        "SAASFW_HTTP__PORT": "0",
        **variables,
    }
    result = subprocess.run(
        _commands()[entry], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 78, output
    assert "Traceback" not in output
    assert named in output
    assert SECRET_PASSWORD not in output
