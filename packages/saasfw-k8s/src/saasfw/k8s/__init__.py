"""saasfw.k8s: health groups, graceful shutdown and drain, validated Kubernetes manifests.

Importing the package is cheap: each name is loaded from its module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from saasfw.k8s._version import __version__

if TYPE_CHECKING:
    from saasfw.k8s._errors import (
        HealthConfigError,
        K8sError,
        KustomizeError,
        LifecycleError,
        ManifestValidationError,
        MissingExtraError,
        RenderError,
    )
    from saasfw.k8s._health import (
        CheckResult,
        HealthCheck,
        HealthRegistry,
        HealthReport,
        Status,
    )
    from saasfw.k8s._kustomize import build as build_kustomization
    from saasfw.k8s._lifecycle import (
        AvailabilityState,
        HookOutcome,
        Lifecycle,
        ShutdownHook,
        running_lifecycles,
    )
    from saasfw.k8s._manifests import render, write_tree
    from saasfw.k8s._probes import HealthProbeMiddleware, HealthProbes, health_app
    from saasfw.k8s._server import GracefulServer, serve
    from saasfw.k8s._settings import (
        HealthSettings,
        K8sSettings,
        LifecycleSettings,
        MigrationJobSettings,
    )
    from saasfw.k8s._settings_env import settings_to_env
    from saasfw.k8s._spec import EnvironmentProfile, ManifestSpec, Resources
    from saasfw.k8s._validate import validate_manifests

_EXPORTS: dict[str, tuple[str, str]] = {
    "AvailabilityState": ("_lifecycle", "AvailabilityState"),
    "CheckResult": ("_health", "CheckResult"),
    "EnvironmentProfile": ("_spec", "EnvironmentProfile"),
    "GracefulServer": ("_server", "GracefulServer"),
    "HealthCheck": ("_health", "HealthCheck"),
    "HealthConfigError": ("_errors", "HealthConfigError"),
    "HealthProbeMiddleware": ("_probes", "HealthProbeMiddleware"),
    "HealthProbes": ("_probes", "HealthProbes"),
    "HealthRegistry": ("_health", "HealthRegistry"),
    "HealthReport": ("_health", "HealthReport"),
    "HealthSettings": ("_settings", "HealthSettings"),
    "HookOutcome": ("_lifecycle", "HookOutcome"),
    "K8sError": ("_errors", "K8sError"),
    "K8sSettings": ("_settings", "K8sSettings"),
    "KustomizeError": ("_errors", "KustomizeError"),
    "Lifecycle": ("_lifecycle", "Lifecycle"),
    "LifecycleError": ("_errors", "LifecycleError"),
    "LifecycleSettings": ("_settings", "LifecycleSettings"),
    "ManifestSpec": ("_spec", "ManifestSpec"),
    "MigrationJobSettings": ("_settings", "MigrationJobSettings"),
    "ManifestValidationError": ("_errors", "ManifestValidationError"),
    "MissingExtraError": ("_errors", "MissingExtraError"),
    "RenderError": ("_errors", "RenderError"),
    "Resources": ("_spec", "Resources"),
    "ShutdownHook": ("_lifecycle", "ShutdownHook"),
    "Status": ("_health", "Status"),
    "build_kustomization": ("_kustomize", "build"),
    "health_app": ("_probes", "health_app"),
    "render": ("_manifests", "render"),
    "running_lifecycles": ("_lifecycle", "running_lifecycles"),
    "serve": ("_server", "serve"),
    "settings_to_env": ("_settings_env", "settings_to_env"),
    "validate_manifests": ("_validate", "validate_manifests"),
    "write_tree": ("_manifests", "write_tree"),
}

__all__ = [
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


def __getattr__(name: str) -> Any:
    try:
        module_name, attribute = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'saasfw.k8s' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"saasfw.k8s.{module_name}"), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
