"""``saasfw new`` generates a service whose own test suite passes right away."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from saasfw.app._cli import main
from saasfw.app._scaffold import ScaffoldError, generate, local_wheels
from saasfw.k8s import build_kustomization, validate_manifests


def _clean_env() -> dict[str, str]:
    # The generated project must not inherit this repository's settings or test switches.
    return {k: v for k, v in os.environ.items() if not k.startswith("SAASFW_")}


def test_new_project_passes_its_own_tests(tmp_path: Path) -> None:
    # --index: no local wheels; the project runs below with this environment's saasfw.
    assert main(["new", "demo", "--dir", str(tmp_path), "--index"]) == 0
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
        "Dockerfile",
        ".dockerignore",
        ".github/workflows/ci.yml",
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


def _wheel(directory: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal wheel: just enough metadata for the scaffold to read."""
    stem = f"{name.replace('-', '_')}-{version}"
    path = directory / f"{stem}-py3-none-any.whl"
    lines = [f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{stem}.dist-info/METADATA", "Metadata-Version: 2.1\n" + "\n".join(lines))
    return path


def test_local_wheels_pin_every_saasfw_distribution(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "saasfw", "0.2.0", ("saasfw-core[sql]<0.2,>=0.1", "fastapi>=0.115"))
    _wheel(wheels, "saasfw-core", "0.1.0")
    _wheel(wheels, "unrelated", "1.0")
    generate("demo", tmp_path / "out", wheels=wheels)
    project = tmp_path / "out" / "demo"
    assert sorted(p.name for p in (project / "wheels").iterdir()) == [
        "saasfw-0.2.0-py3-none-any.whl",
        "saasfw_core-0.1.0-py3-none-any.whl",
    ]
    pyproject = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))
    assert pyproject["tool"]["uv"] == {
        "sources": {
            "saasfw": {"path": "wheels/saasfw-0.2.0-py3-none-any.whl"},
            "saasfw-core": {"path": "wheels/saasfw_core-0.1.0-py3-none-any.whl"},
        }
    }
    # uv pins only names the project lists: the transitive one is listed in a group.
    assert pyproject["dependency-groups"]["saasfw-local"] == ["saasfw-core"]
    assert "COPY wheels/ wheels/" in (project / "Dockerfile").read_text("utf-8")


def test_index_mode_has_no_local_pins(tmp_path: Path) -> None:
    generate("demo", tmp_path)
    pyproject = tomllib.loads((tmp_path / "demo" / "pyproject.toml").read_text("utf-8"))
    assert "uv" not in pyproject.get("tool", {})
    assert not (tmp_path / "demo" / "wheels").exists()
    assert "COPY wheels/" not in (tmp_path / "demo" / "Dockerfile").read_text("utf-8")


def test_incomplete_or_ambiguous_wheel_directories_are_refused(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with pytest.raises(ScaffoldError, match="no saasfw wheel"):
        local_wheels(wheels)
    _wheel(wheels, "saasfw", "0.2.0", ("saasfw-db<0.3,>=0.2", "saasfw-core[sql]>=0.1"))
    _wheel(wheels, "saasfw-db", "0.2.0", ("saasfw-observability>=0.2",))
    with pytest.raises(
        ScaffoldError, match="lacks the wheels of saasfw-core, saasfw-observability"
    ):
        local_wheels(wheels)
    _wheel(wheels, "saasfw-core", "0.1.0")
    _wheel(wheels, "saasfw-observability", "0.2.0")
    assert set(local_wheels(wheels)) == {
        "saasfw",
        "saasfw-core",
        "saasfw-db",
        "saasfw-observability",
    }
    _wheel(wheels, "saasfw-core", "0.1.1")
    with pytest.raises(ScaffoldError, match="two wheels of saasfw-core"):
        local_wheels(wheels)
    assert main(["new", "demo", "--dir", str(tmp_path), "--wheels", str(wheels)]) == 2
    assert not (tmp_path / "demo").exists()
