import subprocess
import sys
import tomllib
from pathlib import Path

import saasfw.k8s

EXPECTED = [
    "AvailabilityState",
    "CheckResult",
    "EnvironmentProfile",
    "GracefulServer",
    "HealthCheck",
    "HealthConfigError",
    "HealthProbeMiddleware",
    "HealthProbes",
    "HealthRegistry",
    "HealthReport",
    "HealthSettings",
    "HookOutcome",
    "K8sError",
    "K8sSettings",
    "KustomizeError",
    "Lifecycle",
    "LifecycleError",
    "LifecycleSettings",
    "ManifestSpec",
    "ManifestValidationError",
    "MigrationJobSettings",
    "MissingExtraError",
    "RenderError",
    "Resources",
    "ShutdownHook",
    "Status",
    "__version__",
    "build_kustomization",
    "health_app",
    "render",
    "running_lifecycles",
    "serve",
    "settings_to_env",
    "validate_manifests",
    "write_tree",
]


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.k8s.__all__ == sorted(saasfw.k8s.__all__)
    assert saasfw.k8s.__all__ == EXPECTED


def test_every_public_name_resolves() -> None:
    for name in saasfw.k8s.__all__:
        assert getattr(saasfw.k8s, name) is not None, name


def test_version_comes_from_distribution_metadata() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert saasfw.k8s.__version__ == project["project"]["version"]


def test_import_is_cheap_and_loads_nothing_heavy() -> None:
    code = (
        "import sys, saasfw.k8s; "
        "print(','.join(m for m in ('starlette', 'pydantic', 'yaml', 'uvicorn', "
        "'kubernetes_validate') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_one_base_exception() -> None:
    for name in saasfw.k8s.__all__:
        value = getattr(saasfw.k8s, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, saasfw.k8s.K8sError), name
    assert issubclass(saasfw.k8s.MissingExtraError, ImportError)


def _run_without(module: str, code: str) -> str:
    script = f"import sys; sys.modules[{module!r}] = None\n" + code
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_missing_uvicorn_names_the_extra() -> None:
    out = _run_without(
        "uvicorn",
        "import saasfw.k8s\n"
        "try:\n    saasfw.k8s.serve\n"
        "except saasfw.k8s.MissingExtraError as exc:\n    print(exc)\n",
    )
    assert "saasfw-k8s[uvicorn]" in out


def test_missing_kubernetes_validate_names_the_extra() -> None:
    out = _run_without(
        "kubernetes_validate",
        "import saasfw.k8s\n"
        "try:\n    saasfw.k8s.validate_manifests([])\n"
        "except ImportError as exc:\n    print(exc)\n",
    )
    assert "saasfw-k8s[validate]" in out
