"""Acceptance 1: every rendered manifest and every built overlay validates against the
Kubernetes JSON schemas of a pinned version; the overlays build with kustomize semantics
(and, where kubectl is installed, exactly as the real kustomize builds them)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from saasfw.k8s import (
    K8sSettings,
    LifecycleSettings,
    ManifestSpec,
    ManifestValidationError,
    RenderError,
    build_kustomization,
    render,
    validate_manifests,
    write_tree,
)
from saasfw.k8s._cli import main
from saasfw.k8s._manifests import KUBERNETES_VERSION

# The pinned version, and the newest schemas kubernetes-validate bundles.
VERSIONS = (KUBERNETES_VERSION, "1.37")
TREES = ("base", "overlays/development", "overlays/production")

SETTINGS = {
    "log_level": "info",
    "db": {"pool_size": 10, "echo": False},
    "observability": {"exporters": ["otlp"], "otlp_endpoint": "http://otel:4317"},
    "k8s": {"lifecycle": {"drain_timeout_seconds": 25, "shutdown_timeout_seconds": 8}},
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("manifests")
    settings = out / "effective.yaml"
    settings.write_text(yaml.safe_dump(SETTINGS), encoding="utf-8")
    for env in ("development", "production"):
        status = main(
            [
                *("render", "--service", "orders", "--env", env),
                *("--image", "ghcr.io/acme/orders:1.4.2", "--out", str(out)),
                *("--settings", str(settings), "--set", "security.rate_limit=100/minute"),
                *("--secret", "orders-db", "--secret", "orders-jwt", "--service-monitor"),
                *("--route-host", "orders.example.com", "--gateway", "infra/edge"),
            ]
        )
        assert status == 0
    return out


def _by_kind(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{r['kind']}/{r['metadata']['name']}": r for r in resources}


def test_the_layout_is_a_base_and_two_overlays(rendered: Path) -> None:
    files = sorted(str(p.relative_to(rendered)) for p in rendered.rglob("*.yaml"))
    assert "base/kustomization.yaml" in files
    for env in ("development", "production"):
        for name in ("kustomization.yaml", "configmap.yaml", "deployment.yaml"):
            assert f"overlays/{env}/{name}" in files


@pytest.mark.parametrize("version", VERSIONS)
def test_every_base_manifest_validates(rendered: Path, version: str) -> None:
    kustomization = yaml.safe_load((rendered / "base/kustomization.yaml").read_text())
    kinds = set()
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((rendered / "base" / name).read_text()):
            kinds.add(document["kind"])
            validate_manifests([document], version=version)
    assert {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "HTTPRoute",
    } <= kinds


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("tree", TREES)
def test_every_built_overlay_validates(rendered: Path, tree: str, version: str) -> None:
    resources = build_kustomization(rendered / tree)
    checked = validate_manifests(resources, version=version)
    # Everything but the two custom resources went through the schema.
    assert len(checked) == len(resources) - 2


def test_validation_is_strict_and_not_vacuous(rendered: Path) -> None:
    resources = _by_kind(build_kustomization(rendered / "overlays/production"))
    deployment = json.loads(json.dumps(resources["Deployment/orders"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(ManifestValidationError, match="Deployment/orders"):
        validate_manifests([deployment])
    hpa = json.loads(json.dumps(resources["HorizontalPodAutoscaler/orders"]))
    hpa["spec"]["minReplicas"] = "three"
    with pytest.raises(ManifestValidationError, match="minReplicas"):
        validate_manifests([hpa])


def _kustomize_major() -> int:
    """Major version of the kustomize built into kubectl on PATH (0 when there is none)."""
    if shutil.which("kubectl") is None:
        return 0
    shown = subprocess.run(
        ["kubectl", "version", "--client"], capture_output=True, text=True, check=False
    ).stdout
    found = re.search(r"Kustomize Version: v(\d+)", shown)
    return int(found.group(1)) if found else 0


@pytest.mark.skipif(
    _kustomize_major() < 4, reason="needs kubectl with kustomize >= v4 (the `patches` field)"
)
@pytest.mark.parametrize("tree", TREES)
def test_built_overlays_equal_real_kustomize(rendered: Path, tree: str) -> None:
    output = subprocess.run(
        ["kubectl", "kustomize", str(rendered / tree)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    real = _by_kind([d for d in yaml.safe_load_all(output) if d])
    ours = _by_kind(build_kustomization(rendered / tree))
    assert ours == real


def test_deployment_is_hardened_and_wired_to_the_probes(rendered: Path) -> None:
    resources = _by_kind(build_kustomization(rendered / "overlays/production"))
    pod = resources["Deployment/orders"]["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    settings = K8sSettings.model_validate(SETTINGS["k8s"])

    assert spec["automountServiceAccountToken"] is False
    assert resources["ServiceAccount/orders"]["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp", "/data"}
    assert {v["name"] for v in spec["volumes"] if "emptyDir" in v} == {"tmp", "data"}

    assert container["startupProbe"]["httpGet"]["path"] == "/health/startup"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        # The kubelet waits longer than the slowest check may take.
        assert container[probe]["timeoutSeconds"] > settings.health.default_check_timeout_seconds
    lifecycle = settings.lifecycle
    assert container["lifecycle"]["preStop"] == {
        "sleep": {"seconds": lifecycle.prestop_sleep_seconds}
    }
    assert spec["terminationGracePeriodSeconds"] == lifecycle.termination_grace_period_seconds
    assert spec["terminationGracePeriodSeconds"] == 5 + 25 + 8 + 5

    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8000"
    assert {c["topologyKey"] for c in spec["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    assert set(container["resources"]) == {"requests", "limits"}
    assert container["envFrom"] == [
        {"configMapRef": {"name": "orders-config"}},
        {"secretRef": {"name": "orders-db"}},
        {"secretRef": {"name": "orders-jwt"}},
    ]


def test_config_map_holds_the_settings_and_overlays_differ(rendered: Path) -> None:
    dev = _by_kind(build_kustomization(rendered / "overlays/development"))
    prod = _by_kind(build_kustomization(rendered / "overlays/production"))
    data = prod["ConfigMap/orders-config"]["data"]
    assert data == {
        "SAASFW_DB__ECHO": "false",
        "SAASFW_DB__POOL_SIZE": "10",
        # 10 replicas at the autoscaler's maximum plus a 25% rollout surge (3 pods).
        "SAASFW_DEPLOYMENT__INSTANCES": "13",
        "SAASFW_ENV": "production",
        "SAASFW_K8S__LIFECYCLE__DRAIN_TIMEOUT_SECONDS": "25",
        "SAASFW_K8S__LIFECYCLE__SHUTDOWN_TIMEOUT_SECONDS": "8",
        "SAASFW_LOG_LEVEL": "info",
        "SAASFW_OBSERVABILITY__EXPORTERS": '["otlp"]',
        "SAASFW_OBSERVABILITY__OTLP_ENDPOINT": "http://otel:4317",
        "SAASFW_SECURITY__RATE_LIMIT": "100/minute",
    }
    assert dev["ConfigMap/orders-config"]["data"]["SAASFW_ENV"] == "development"
    assert dev["ConfigMap/orders-config"]["data"]["SAASFW_DEPLOYMENT__INSTANCES"] == "3"
    assert dev["HorizontalPodAutoscaler/orders"]["spec"]["minReplicas"] == 1
    assert prod["HorizontalPodAutoscaler/orders"]["spec"]["minReplicas"] == 3
    assert prod["HorizontalPodAutoscaler/orders"]["apiVersion"] == "autoscaling/v2"

    def annotations(resources: dict[str, dict[str, Any]]) -> dict[str, str]:
        found: dict[str, str] = resources["Deployment/orders"]["spec"]["template"]["metadata"][
            "annotations"
        ]
        return found

    # A config change changes the pod template, so a rollout picks it up.
    key = "saasfw.dev/config-sha256"
    assert annotations(dev)[key] != annotations(prod)[key]
    assert "replicas" not in prod["Deployment/orders"]["spec"]


def test_network_policy_denies_by_default_and_opens_only_what_is_needed(rendered: Path) -> None:
    resources = _by_kind(build_kustomization(rendered / "base"))
    deny = resources["NetworkPolicy/default-deny-all"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    allow = resources["NetworkPolicy/orders"]["spec"]
    assert allow["ingress"] == [
        {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": "http"}]}
    ]
    dns, services = allow["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert [p["port"] for p in services["ports"]] == [4317, 4318, 5432, 6379]


def test_custom_resources_are_well_formed(rendered: Path) -> None:
    resources = _by_kind(build_kustomization(rendered / "base"))
    monitor = resources["ServiceMonitor/orders"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = resources["Service/orders"]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    route = resources["HTTPRoute/orders"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"name": "edge", "namespace": "infra"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "orders", "port": 80}]


@pytest.mark.parametrize(
    ("settings", "needle"),
    [
        ({"db": {"password": "x"}}, "looks like a secret"),
        ({"security": {"jwt": {"secret_key": "x"}}}, "looks like a secret"),
        ({"db": {"url": "**********"}}, "masked"),
        ({"db": {"url": "postgresql://app:pw@db/orders"}}, "password"),
    ],
)
def test_secrets_never_reach_the_config_map(
    tmp_path: Path, settings: dict[str, Any], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "settings.json"
    file.write_text(json.dumps(settings), encoding="utf-8")
    out = tmp_path / "out"
    status = main(
        [
            *("render", "--service", "orders", "--env", "production", "--image", "img:1"),
            *("--out", str(out), "--settings", str(file)),
        ]
    )
    assert status == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    "changes",
    [
        {"service": "Orders"},
        {"service": "a" * 60},
        {"image": "has space"},
        {"port": 0},
        {"secrets": ("Bad_Name",)},
        {"route_hostnames": ("orders.example.com",)},
        {"egress_ports": (70000,)},
    ],
)
def test_invalid_specs_are_refused(changes: dict[str, Any]) -> None:
    spec = ManifestSpec(**{"service": "orders", "image": "img:1", **changes})
    with pytest.raises(RenderError):
        render(spec, ["production"])


def test_unknown_environment_gets_the_production_profile(tmp_path: Path) -> None:
    spec = ManifestSpec(
        service="orders",
        image="img:1",
        k8s=K8sSettings(lifecycle=LifecycleSettings(prestop_sleep_seconds=0)),
    )
    write_tree(render(spec, ["staging"]), tmp_path)
    resources = _by_kind(build_kustomization(tmp_path / "overlays/staging"))
    assert resources["HorizontalPodAutoscaler/orders"]["spec"]["minReplicas"] == 3
    container = resources["Deployment/orders"]["spec"]["template"]["spec"]["containers"][0]
    assert "lifecycle" not in container
    validate_manifests(resources.values())


def test_build_command_prints_the_built_overlay(
    rendered: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", str(rendered / "overlays/development")]) == 0
    printed = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert _by_kind(printed) == _by_kind(build_kustomization(rendered / "overlays/development"))


def test_invalid_output_is_never_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    # 1.25 predates the preStop sleep action: the Deployment does not validate there.
    status = main(
        [
            *("render", "--service", "orders", "--env", "production", "--image", "img:1"),
            *("--out", str(out), "--kubernetes-version", "1.25"),
        ]
    )
    assert status == 2
    assert "Deployment/orders" in capsys.readouterr().err
    assert not out.exists()
