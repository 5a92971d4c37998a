"""``saasfw new`` generates a service whose own test suite passes right away."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from saasfw.app._cli import main
from saasfw.app._scaffold import ScaffoldError, generate
from saasfw.k8s import build_kustomization, validate_manifests


def _clean_env() -> dict[str, str]:
    # The generated project must not inherit this repository's settings or test switches.
    return {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}


def test_new_project_passes_its_own_tests(tmp_path: Path) -> None:
    assert main(["new", "demo", "--dir", str(tmp_path)]) == 0
    project = tmp_path / "demo"
    for expected in (
        "pyproject.toml",
        "README.md",
        "config/demo/base.yaml",
        "config/demo/development.yaml",
        "config/demo/test.yaml",
        "config/demo/staging.yaml",
        "config/demo/production.yaml",
        "src/demo/app.py",
        "src/demo/routes.py",
        "src/demo/migrations/versions/v0001_initial.py",
        "tests/test_routes.py",
        "deploy/k8s/base/kustomization.yaml",
        "deploy/k8s/overlays/production/kustomization.yaml",
    ):
        assert (project / expected).is_file(), expected
    deployment = yaml.safe_load((project / "deploy/k8s/base/deployment.yaml").read_text())
    assert deployment["kind"] == "Deployment"
    for overlay in ("development", "production"):
        built = build_kustomization(project / "deploy/k8s/overlays" / overlay)
        assert validate_manifests(built)  # the Kubernetes schemas accept every resource

    # The generated project's own test command, with this environment's saasfw installed.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=project,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_hyphenated_names_become_packages(tmp_path: Path) -> None:
    generate("billing-api", tmp_path)
    assert (tmp_path / "billing-api" / "src" / "billing_api" / "app.py").is_file()
    text = (tmp_path / "billing-api" / "pyproject.toml").read_text()
    assert 'billing-api = "billing_api.__main__:main"' in text


@pytest.mark.parametrize("name", ["Demo", "1demo", "demo_", "de--mo", "x", "a" * 60, "../x"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ScaffoldError):
        generate(name, tmp_path)


def test_an_existing_directory_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "demo").mkdir()
    assert main(["new", "demo", "--dir", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
