"""A pod of the rendered production overlay without shared stores is refused before it binds.

The environment is what Kubernetes gives the pod: the overlay's ConfigMap, plus the
Secret entries docs/kubernetes.md lists, except the database and Redis URLs (the shared
stores). The service must exit 78 before binding its port and name each setting.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = ROOT / "deploy" / "k8s" / "orders" / "overlays" / "production" / "configmap.yaml"
SHARED_STORES = {"SAASFW_DB__URL", "SAASFW_REDIS_URL"}


def _secret_entries() -> list[str]:
    text = (ROOT / "docs" / "kubernetes.md").read_text()
    return [name for name in re.findall(r"`(SAASFW_[A-Z0-9_<>]+)`", text) if "<" not in name]


def test_rendered_production_pod_without_shared_stores_is_refused(tmp_path: Path) -> None:
    config = yaml.safe_load(OVERLAY.read_text())["data"]
    assert config["SAASFW_DEPLOYMENT__INSTANCES"] == "13"
    secrets = {
        name: "s3cr3t-" + "v" * 40 + "7Kq2"
        for name in _secret_entries()
        if name not in SHARED_STORES and name not in config
    }
    secrets["SAASFW_AUDIT__CHAIN_KEY"] = "ab" * 32
    secrets["SAASFW_AUDIT__CHECKPOINTS__SIGNING_KEY"] = "cd" * 32
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}
    env.update(config)
    env.update(secrets)
    env.update(
        {
            "SAASFW_HTTP__PORT": str(port),
            "SAASFW_DATA_DIR": str(tmp_path),
            "SAASFW_AUDIT__FILE__PATH": str(tmp_path / "audit.jsonl"),
            "SAASFW_AUDIT__CHECKPOINTS__PATH": str(tmp_path / "checkpoints.jsonl"),
        }
    )
    result = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "orders-service")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 78, report
    assert "db.url (rule fleet; model default)" in report
    assert "security.rate_limit.storage_url (rule fleet; model default)" in report
    assert "up to 13 instances" in report
    assert "Traceback" not in report
    for value in secrets.values():
        assert value not in report
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # never bound by the refused service
