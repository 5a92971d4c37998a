"""``k8s.migrations: job``: a migration Job beside the Deployment, valid and consistent with it.

The Job runs the migration command with the Deployment's image, env and secret refs; its
pods are not the service's pods (no Service, PDB or policy selects them); the Deployment's
pods stop migrating at start-up; every manifest still validates against the Kubernetes
schemas, and the overlays build as kustomize builds them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from saasfw.k8s import (
    K8sSettings,
    ManifestSpec,
    MigrationJobSettings,
    build_kustomization,
    render,
    validate_manifests,
    write_tree,
)
from saasfw.k8s._cli import main
from saasfw.k8s._manifests import KUBERNETES_VERSION

VERSIONS = (KUBERNETES_VERSION, "1.37")
TREES = ("base", "overlays/development", "overlays/production")
IMAGE = "ghcr.io/acme/orders:1.4.2"
SETTINGS = {
    "db": {"pool_size": 10},
    "k8s": {
        "migrations": "job",
        "migration_job": {"versions": "orders_service.migrations:VERSIONS_DIR"},
    },
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("manifests")
    settings = out / "effective.yaml"
    settings.write_text(yaml.safe_dump(SETTINGS), encoding="utf-8")
    for env in ("development", "production"):
        status = main(
            [
                *("render", "--service", "orders-service", "--env", env),
                *("--image", IMAGE, "--out", str(out), "--settings", str(settings)),
                *("--secret", "orders-db", "--secret", "orders-jwt"),
            ]
        )
        assert status == 0  # schema validation ran inside render
    return out


def by_kind(resources: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["kind"]: r for r in resources if r["kind"] != "NetworkPolicy"} | {
        f"NetworkPolicy/{r['metadata']['name']}": r
        for r in resources
        if r["kind"] == "NetworkPolicy"
    }


def app_container(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return resources["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def job_container(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return resources["Job"]["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("tree", TREES)
def test_every_tree_with_the_job_validates(rendered: Path, tree: str, version: str) -> None:
    resources = build_kustomization(rendered / tree)
    assert validate_manifests(resources, version=version) == [
        f"{r['kind']}/{r['metadata']['name']}" for r in resources
    ]
    assert sum(r["kind"] == "Job" for r in resources) == 1


@pytest.mark.parametrize("tree", TREES)
def test_the_job_runs_the_command_in_the_deployments_pod_environment(
    rendered: Path, tree: str
) -> None:
    resources = by_kind(build_kustomization(rendered / tree))
    app, job = app_container(resources), job_container(resources)
    assert job["command"] == ["saasfw-db", "upgrade"]
    assert job["image"] == app["image"] == IMAGE
    assert (
        job["envFrom"]
        == app["envFrom"]
        == [
            {"configMapRef": {"name": "orders-service-config"}},
            {"secretRef": {"name": "orders-db"}},
            {"secretRef": {"name": "orders-jwt"}},
        ]
    )
    assert job["securityContext"] == app["securityContext"]
    assert job["volumeMounts"] == app["volumeMounts"]
    pod = resources["Job"]["spec"]["template"]["spec"]
    app_pod = resources["Deployment"]["spec"]["template"]["spec"]
    for key in ("serviceAccountName", "securityContext", "volumes", "automountServiceAccountToken"):
        assert pod[key] == app_pod[key], key
    assert pod["restartPolicy"] == "Never"
    job_env, app_env = env_of(job), env_of(app)
    assert job_env["SAASFW_SERVICE_NAME"] == "orders-service"
    assert job_env["SAASFW_DB_MIGRATIONS"] == "orders_service.migrations:VERSIONS_DIR"
    # The Deployment's pods only check the schema; the Job migrates.
    assert app_env["SAASFW_DB__MIGRATE_ON_START"] == "false"
    assert "SAASFW_DB__MIGRATE_ON_START" not in job_env
    assert {k: v for k, v in app_env.items() if k != "SAASFW_DB__MIGRATE_ON_START"}.items() <= (
        job_env.items()
    )
    spec = resources["Job"]["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (2, 1800)
    assert spec["ttlSecondsAfterFinished"] == 86400


def test_migration_pods_are_not_service_pods_and_only_reach_out(rendered: Path) -> None:
    resources = by_kind(build_kustomization(rendered / "overlays/production"))
    job_labels = resources["Job"]["spec"]["template"]["metadata"]["labels"]
    selectors = [
        resources["Service"]["spec"]["selector"],
        resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        resources["Deployment"]["spec"]["selector"]["matchLabels"],
        resources["NetworkPolicy/orders-service"]["spec"]["podSelector"]["matchLabels"],
    ]
    for selector in selectors:
        assert not selector.items() <= job_labels.items(), selector
    policy = resources["NetworkPolicy/orders-service-migrate"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= job_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy  # nothing may connect to a migration pod
    service_policy = resources["NetworkPolicy/orders-service"]["spec"]
    assert policy["egress"] == service_policy["egress"]  # DNS and the database port


def test_job_name_follows_the_pod_template_and_stays_a_label_value(tmp_path: Path) -> None:
    def job(image: str, service: str = "orders-service", **job: Any) -> dict[str, Any]:
        k8s = K8sSettings(migrations="job", migration_job=MigrationJobSettings(**job))
        files = render(ManifestSpec(service=service, image=image, k8s=k8s), ["production"])
        return dict(yaml.safe_load(files["base/migration-job.yaml"]))

    first = job(IMAGE)["metadata"]["name"]
    assert re.fullmatch(r"orders-service-migrate-[0-9a-f]{10}", first)
    assert job(IMAGE)["metadata"]["name"] == first  # applying again changes nothing
    assert job("ghcr.io/acme/orders:1.4.3")["metadata"]["name"] != first  # new release, new Job
    assert job(IMAGE, command=["orders-service", "migrate"])["metadata"]["name"] != first
    long_name = job(IMAGE, service="s" * 50)["metadata"]["name"]
    assert len(long_name) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", long_name)


def test_startup_migrations_render_no_job(tmp_path: Path) -> None:
    files = render(ManifestSpec(service="orders", image=IMAGE), ["production"])
    assert not any("migration" in name for name in files)
    write_tree(files, tmp_path)
    resources = build_kustomization(tmp_path / "overlays/production")
    assert "Job" not in {r["kind"] for r in resources}
    deployment = next(r for r in resources if r["kind"] == "Deployment")
    assert "SAASFW_DB__MIGRATE_ON_START" not in env_of(
        deployment["spec"]["template"]["spec"]["containers"][0]
    )


def test_unknown_migration_mode_is_refused(tmp_path: Path, capsys: Any) -> None:
    status = main(
        [
            *("render", "--service", "orders", "--env", "production", "--image", IMAGE),
            *("--out", str(tmp_path), "--set", "k8s.migrations=sometimes"),
        ]
    )
    assert status == 2
    assert "migrations" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def _kustomize_major() -> int:
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
def test_built_overlays_with_the_job_equal_real_kustomize(rendered: Path, tree: str) -> None:
    output = subprocess.run(
        ["kubectl", "kustomize", str(rendered / tree)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    real = [d for d in yaml.safe_load_all(output) if d]
    ours = build_kustomization(rendered / tree)
    key = lambda r: (r["kind"], r["metadata"]["name"])  # noqa: E731
    assert sorted(ours, key=key) == sorted(real, key=key)
