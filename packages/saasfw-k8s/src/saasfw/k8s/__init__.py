"""saasfw.k8s: health groups, graceful shutdown and drain, validated Kubernetes manifests.

Importing the package is cheap: each name is loaded from its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from saasfw.core import lazy_exports
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

_LAZY = {
    "AvailabilityState": "saasfw.k8s._lifecycle",
    "CheckResult": "saasfw.k8s._health",
    "EnvironmentProfile": "saasfw.k8s._spec",
    "GracefulServer": "saasfw.k8s._server",
    "HealthCheck": "saasfw.k8s._health",
    "HealthConfigError": "saasfw.k8s._errors",
    "HealthProbeMiddleware": "saasfw.k8s._probes",
    "HealthProbes": "saasfw.k8s._probes",
    "HealthRegistry": "saasfw.k8s._health",
    "HealthReport": "saasfw.k8s._health",
    "HealthSettings": "saasfw.k8s._settings",
    "HookOutcome": "saasfw.k8s._lifecycle",
    "K8sError": "saasfw.k8s._errors",
    "K8sSettings": "saasfw.k8s._settings",
    "KustomizeError": "saasfw.k8s._errors",
    "Lifecycle": "saasfw.k8s._lifecycle",
    "LifecycleError": "saasfw.k8s._errors",
    "LifecycleSettings": "saasfw.k8s._settings",
    "ManifestSpec": "saasfw.k8s._spec",
    "MigrationJobSettings": "saasfw.k8s._settings",
    "ManifestValidationError": "saasfw.k8s._errors",
    "MissingExtraError": "saasfw.k8s._errors",
    "RenderError": "saasfw.k8s._errors",
    "Resources": "saasfw.k8s._spec",
    "ShutdownHook": "saasfw.k8s._lifecycle",
    "Status": "saasfw.k8s._health",
    "build_kustomization": "saasfw.k8s._kustomize:build",
    "health_app": "saasfw.k8s._probes",
    "render": "saasfw.k8s._manifests",
    "running_lifecycles": "saasfw.k8s._lifecycle",
    "serve": "saasfw.k8s._server",
    "settings_to_env": "saasfw.k8s._settings_env",
    "validate_manifests": "saasfw.k8s._validate",
    "write_tree": "saasfw.k8s._manifests",
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

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
