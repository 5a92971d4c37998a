"""The projections service's rendered manifests are current and valid; both services may
reach the message broker (RabbitMQ 5672, NATS 4222) through their network policies."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"


def _egress_ports(policy: Path) -> set[int]:
    spec: dict[str, Any] = yaml.safe_load(policy.read_text())["spec"]
    return {int(p["port"]) for rule in spec["egress"] for p in rule.get("ports", [])}


def test_projections_manifests_are_up_to_date_and_valid(tmp_path: Path) -> None:
    from saasfw.k8s import build_kustomization, validate_manifests

    out = tmp_path / "projections"
    subprocess.run(
        ["sh", str(K8S / "render.sh")],
        env={**os.environ, "OUT": str(tmp_path / "orders"), "PROJECTIONS_OUT": str(out)},
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=120,
    )
    committed = K8S / "projections"
    fresh = {p.relative_to(out): p.read_text() for p in out.rglob("*") if p.is_file()}
    saved = {p.relative_to(committed): p.read_text() for p in committed.rglob("*") if p.is_file()}
    assert fresh == saved, "deploy/k8s/projections is stale: run `sh deploy/k8s/render.sh`"
    for tree in ("base", "overlays/development", "overlays/production"):
        assert validate_manifests(build_kustomization(committed / tree))
    deployment = yaml.safe_load((committed / "base" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "saasfw/projections-service:0.1.0"


def test_both_services_may_reach_the_broker_and_projections_not_redis() -> None:
    orders = _egress_ports(K8S / "orders" / "base" / "networkpolicy.yaml")
    projections = _egress_ports(K8S / "projections" / "base" / "networkpolicy.yaml")
    assert {5672, 4222, 5432} <= orders
    assert {5672, 4222, 5432} <= projections
    assert 6379 not in projections  # it uses no Redis: nothing opened that it does not need
