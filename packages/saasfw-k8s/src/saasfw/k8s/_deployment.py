"""The base Deployment: the app container, the pod that runs it and the rollout around it."""

from __future__ import annotations

import math
from typing import Any

from saasfw.k8s._labels import config_map_name, labels, meta, selector
from saasfw.k8s._spec import MAX_SURGE_PERCENT, ManifestSpec

RUN_AS_USER = 10001
"""The uid/gid of the non-root user the Dockerfile creates and the pods run as."""


def _probe(path: str, *, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http", "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def _container(spec: ManifestSpec) -> dict[str, Any]:
    """The one ``app`` container: image, env, probes, hardening and mounts."""
    health = spec.k8s.health
    prefix = health.prefix.rstrip("/")
    # The kubelet must wait longer than the slowest check, or a slow-but-healthy check fails it.
    probe_timeout = math.ceil(health.default_check_timeout_seconds) + 1
    container: dict[str, Any] = {
        "name": "app",
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": [{"name": "PORT", "value": str(spec.port)}],
        "envFrom": [
            {"configMapRef": {"name": config_map_name(spec)}},
            *({"secretRef": {"name": secret}} for secret in spec.secrets),
        ],
        "resources": spec.base.resources.to_dict(),
        # Up to 60 x 2 s to start; liveness and readiness only begin once startup passed.
        "startupProbe": _probe(f"{prefix}/startup", period=2, failures=60, timeout=probe_timeout),
        "livenessProbe": _probe(f"{prefix}/live", period=10, failures=3, timeout=probe_timeout),
        "readinessProbe": _probe(f"{prefix}/ready", period=5, failures=2, timeout=probe_timeout),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108  # nosec B108
            {"name": "data", "mountPath": spec.data_dir},
        ],
    }
    sleep_seconds = spec.k8s.lifecycle.prestop_sleep_seconds
    if sleep_seconds > 0:
        # Endpoints are removed while this sleeps, so no new traffic arrives after SIGTERM.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": sleep_seconds}}}
    return container


def _pod_template(spec: ManifestSpec) -> dict[str, Any]:
    """The pod: scrape annotations, non-root security context, spread, container, volumes."""
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector(spec)},
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]
    return {
        "metadata": {
            "labels": labels(spec),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(spec.port),
                "prometheus.io/path": spec.metrics_path,
            },
        },
        "spec": {
            "serviceAccountName": spec.service,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": spec.k8s.lifecycle.termination_grace_period_seconds,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "fsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "topologySpreadConstraints": spread,
            "containers": [_container(spec)],
            "volumes": [
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
            ],
        },
    }


def deployment(spec: ManifestSpec) -> dict[str, Any]:
    """The Deployment document: a surge-only rolling update of the pod template."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(spec, spec.service),
        "spec": {
            # No replicas: the HorizontalPodAutoscaler owns the count.
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(spec)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": f"{MAX_SURGE_PERCENT}%", "maxUnavailable": 0},
            },
            "template": _pod_template(spec),
        },
    }
