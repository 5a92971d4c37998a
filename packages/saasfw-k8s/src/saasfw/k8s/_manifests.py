"""Render a Kustomize base and per-environment overlays for one saasfw service."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from saasfw.k8s._errors import RenderError
from saasfw.k8s._migration_job import add_migration_job
from saasfw.k8s._settings import K8sSettings

KUBERNETES_VERSION = "1.33"
"""The Kubernetes version whose schemas the rendered manifests are validated against."""

RUN_AS_USER = 10001
"""The uid/gid of the non-root user the Dockerfile creates and the pods run as."""

KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


@dataclass(frozen=True, kw_only=True)
class Resources:
    """Container resource requests and limits (Kubernetes quantities)."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str

    def to_dict(self) -> dict[str, Any]:
        for value in (self.cpu_request, self.memory_request, self.cpu_limit, self.memory_limit):
            if not _QUANTITY.match(value):
                raise RenderError(f"{value!r} is not a Kubernetes quantity", where="resources")
        return {
            "requests": {"cpu": self.cpu_request, "memory": self.memory_request},
            "limits": {"cpu": self.cpu_limit, "memory": self.memory_limit},
        }


@dataclass(frozen=True, kw_only=True)
class EnvironmentProfile:
    """What an overlay changes: scale bounds and resources."""

    min_replicas: int
    max_replicas: int
    resources: Resources


PROFILES: Mapping[str, EnvironmentProfile] = {
    "development": EnvironmentProfile(
        min_replicas=1,
        max_replicas=2,
        resources=Resources(
            cpu_request="50m", memory_request="128Mi", cpu_limit="500m", memory_limit="256Mi"
        ),
    ),
    "production": EnvironmentProfile(
        min_replicas=3,
        max_replicas=10,
        resources=Resources(
            cpu_request="250m", memory_request="256Mi", cpu_limit="1", memory_limit="512Mi"
        ),
    ),
}
"""Built-in profiles; an environment not named here gets the production profile."""

_DEVELOPMENT_NAMES = frozenset({"development", "dev", "local", "test"})


MAX_SURGE_PERCENT = 25


def profile_for(env: str) -> EnvironmentProfile:
    """The development profile for development-like names, else (fail safe) production."""
    return PROFILES["development" if env in _DEVELOPMENT_NAMES else "production"]


@dataclass(frozen=True, kw_only=True)
class ManifestSpec:
    """Everything the renderer needs about one service.

    ``config`` is the ConfigMap content (environment variables, from ``settings_to_env``);
    ``secrets`` are names of Secrets the pods read with ``envFrom`` (values are never seen).
    """

    service: str
    image: str
    namespace: str | None = None
    port: int = 8000
    config: Mapping[str, str] = field(default_factory=dict)
    secrets: Sequence[str] = ()
    k8s: K8sSettings = field(default_factory=K8sSettings)
    env_var: str | None = "SAASFW_ENV"
    instances_var: str | None = "SAASFW_DEPLOYMENT__INSTANCES"
    metrics_path: str = "/metrics"
    egress_ports: Sequence[int] = (5432, 6379, 4317, 4318)
    service_monitor: bool = False
    route_hostnames: Sequence[str] = ()
    gateway: str | None = None
    data_dir: str = "/data"
    cpu_target_percent: int = 70
    base: EnvironmentProfile = field(
        default_factory=lambda: EnvironmentProfile(
            min_replicas=2,
            max_replicas=5,
            resources=Resources(
                cpu_request="100m", memory_request="192Mi", cpu_limit="1", memory_limit="384Mi"
            ),
        )
    )

    @property
    def ns(self) -> str:
        return self.namespace or self.service

    def validate(self) -> None:
        """Raise ``RenderError`` for the first input Kubernetes or kustomize would reject."""
        for what, value in (("service", self.service), ("namespace", self.ns)):
            if not _DNS_LABEL.match(value) or len(value) > 50:
                raise RenderError(
                    f"{what} {value!r} must be a DNS label of at most 50 characters "
                    "(lowercase letters, digits, '-')",
                    where=what,
                )
        if not self.image or any(c.isspace() for c in self.image):
            raise RenderError(f"image {self.image!r} is not an image reference", where="image")
        if not 1 <= self.port <= 65535:
            raise RenderError(f"port {self.port} is out of range", where="port")
        for secret in self.secrets:
            if not _DNS_SUBDOMAIN.match(secret):
                raise RenderError(f"secret name {secret!r} is not a valid name", where=secret)
        for port in self.egress_ports:
            if not 1 <= port <= 65535:
                raise RenderError(f"egress port {port} is out of range", where="egress_ports")
        for host in self.route_hostnames:
            if not _HOSTNAME.match(host):
                raise RenderError(f"route hostname {host!r} is not a hostname", where=host)
        if self.route_hostnames and not self.gateway:
            raise RenderError("an HTTPRoute needs --gateway NAME[/NAMESPACE]", where="gateway")
        if not self.metrics_path.startswith("/"):
            raise RenderError("metrics path must start with '/'", where="metrics_path")
        if not self.data_dir.startswith("/"):
            raise RenderError("data dir must be an absolute path", where="data_dir")
        if not 1 <= self.cpu_target_percent <= 100:
            raise RenderError("cpu target must be 1-100 percent", where="cpu_target_percent")
        for where, var in (("env_var", self.env_var), ("instances_var", self.instances_var)):
            if var is not None and not re.match(r"^[A-Z_][A-Z0-9_]*$", var):
                raise RenderError(f"{var!r} is not a variable name", where=where)


def _labels(spec: ManifestSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": spec.service,
        "app.kubernetes.io/part-of": "saasfw",
        "app.kubernetes.io/managed-by": "saasfw-k8s",
    }


def _selector(spec: ManifestSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": spec.service}


def _meta(spec: ManifestSpec, name: str, *, namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespaced:
        meta["namespace"] = spec.ns
    meta["labels"] = _labels(spec)
    return meta


def config_map_name(spec: ManifestSpec) -> str:
    return f"{spec.service}-config"


def _probe(path: str, *, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http", "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def _deployment(spec: ManifestSpec) -> dict[str, Any]:
    health = spec.k8s.health
    lifecycle = spec.k8s.lifecycle
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
    if lifecycle.prestop_sleep_seconds > 0:
        # Endpoints are removed while this sleeps, so no new traffic arrives after SIGTERM.
        sleep = {"seconds": lifecycle.prestop_sleep_seconds}
        container["lifecycle"] = {"preStop": {"sleep": sleep}}
    spread = [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": _selector(spec)},
        }
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(spec, spec.service),
        "spec": {
            # No replicas: the HorizontalPodAutoscaler owns the count.
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": _selector(spec)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": f"{MAX_SURGE_PERCENT}%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": _labels(spec),
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
                    "terminationGracePeriodSeconds": lifecycle.termination_grace_period_seconds,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "fsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "topologySpreadConstraints": spread,
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
                        {"name": "data", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    }


def _network_policies(spec: ManifestSpec) -> list[dict[str, Any]]:
    deny = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(spec, "default-deny-all"),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }
    dns_ports = [{"protocol": proto, "port": 53} for proto in ("UDP", "TCP")]
    egress: list[dict[str, Any]] = [
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    },
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": dns_ports,
        }
    ]
    if spec.egress_ports:
        egress.append(
            {"ports": [{"protocol": "TCP", "port": p} for p in sorted(set(spec.egress_ports))]}
        )
    allow = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(spec, spec.service),
        "spec": {
            "podSelector": {"matchLabels": _selector(spec)},
            "policyTypes": ["Ingress", "Egress"],
            # Any pod in the cluster (gateway, Prometheus, other services) may call the port.
            "ingress": [
                {
                    "from": [{"namespaceSelector": {}}],
                    "ports": [{"protocol": "TCP", "port": "http"}],
                }
            ],
            "egress": egress,
        },
    }
    return [deny, allow]


def base_resources(spec: ManifestSpec) -> dict[str, dict[str, Any]]:
    """The base manifests by file name, in apply order."""
    spec.validate()
    files: dict[str, dict[str, Any]] = {
        "namespace.yaml": {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": spec.ns,
                "labels": {
                    **_labels(spec),
                    # The pods satisfy the "restricted" Pod Security Standard; enforce it.
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                },
            },
        },
        "serviceaccount.yaml": {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _meta(spec, spec.service),
            "automountServiceAccountToken": False,
        },
        "configmap.yaml": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(spec, config_map_name(spec)),
            "data": {},
        },
        "deployment.yaml": _deployment(spec),
        "service.yaml": {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _meta(spec, spec.service),
            "spec": {
                "type": "ClusterIP",
                "selector": _selector(spec),
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        "hpa.yaml": {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(spec, spec.service),
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": spec.service,
                },
                "minReplicas": spec.base.min_replicas,
                "maxReplicas": spec.base.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {
                                "type": "Utilization",
                                "averageUtilization": spec.cpu_target_percent,
                            },
                        },
                    }
                ],
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 300,
                        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                    },
                    "scaleUp": {"stabilizationWindowSeconds": 0},
                },
            },
        },
        "pdb.yaml": {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _meta(spec, spec.service),
            "spec": {
                # maxUnavailable (not minAvailable) so a single-replica dev pod never blocks a
                # node drain.
                "maxUnavailable": 1,
                "selector": {"matchLabels": _selector(spec)},
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        },
    }
    deny, allow = _network_policies(spec)
    files["networkpolicy-default-deny.yaml"] = deny
    files["networkpolicy.yaml"] = allow
    if spec.k8s.migrations == "job":
        add_migration_job(files, spec.service, spec.k8s.migration_job)
    if spec.service_monitor:
        files["servicemonitor.yaml"] = {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": _meta(spec, spec.service),
            "spec": {
                "selector": {"matchLabels": _selector(spec)},
                "namespaceSelector": {"matchNames": [spec.ns]},
                "endpoints": [{"port": "http", "path": spec.metrics_path, "interval": "30s"}],
            },
        }
    if spec.route_hostnames and spec.gateway:
        gw_ns, _, gw_name = spec.gateway.rpartition("/")
        parent: dict[str, Any] = {"name": gw_name}
        if gw_ns:
            parent["namespace"] = gw_ns
        files["httproute.yaml"] = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": _meta(spec, spec.service),
            "spec": {
                "parentRefs": [parent],
                "hostnames": list(spec.route_hostnames),
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [{"name": spec.service, "port": 80}],
                    }
                ],
            },
        }
    return files


def max_instances(profile: EnvironmentProfile) -> int:
    """How many pods may run at once: the autoscaler's maximum plus the rollout surge.

    Kubernetes rounds a percentage surge up, so at 10 replicas a 25% surge adds 3 pods of
    the new version while the 10 old ones still serve.
    """
    return profile.max_replicas + math.ceil(profile.max_replicas * MAX_SURGE_PERCENT / 100)


def _overlay(spec: ManifestSpec, env: str) -> dict[str, Any]:
    """The overlay files of one environment (YAML documents or text by file name)."""
    profile = profile_for(env)
    data = dict(spec.config)
    if spec.env_var is not None:
        data[spec.env_var] = env
    if spec.instances_var is not None:
        # The production rules read it: several instances forbid per-process state.
        data.setdefault(spec.instances_var, str(max_instances(profile)))
    data = dict(sorted(data.items()))
    checksum = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    config_patch = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_map_name(spec), "namespace": spec.ns},
        "data": data,
    }
    deployment_patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.service, "namespace": spec.ns},
        "spec": {
            "template": {
                # A config change changes the pod template, so pods roll to pick it up.
                "metadata": {"annotations": {"saasfw.dev/config-sha256": checksum}},
                "spec": {"containers": [{"name": "app", "resources": profile.resources.to_dict()}]},
            }
        },
    }
    hpa_ops = [
        {"op": "replace", "path": "/spec/minReplicas", "value": profile.min_replicas},
        {"op": "replace", "path": "/spec/maxReplicas", "value": profile.max_replicas},
    ]
    kustomization = {
        "apiVersion": KUSTOMIZE_API,
        "kind": "Kustomization",
        "resources": ["../../base"],
        "patches": [
            {"path": "configmap.yaml"},
            {"path": "deployment.yaml"},
            {
                "target": {
                    "group": "autoscaling",
                    "version": "v2",
                    "kind": "HorizontalPodAutoscaler",
                    "name": spec.service,
                },
                "patch": _dump(hpa_ops),
            },
        ],
    }
    return {
        "kustomization.yaml": kustomization,
        "configmap.yaml": config_patch,
        "deployment.yaml": deployment_patch,
    }


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (inline patches) as literal blocks, so they read as YAML."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _dump(document: Any) -> str:
    return yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000
    )


_HEADER = "# Rendered by saasfw-k8s; change the inputs and render again rather than editing.\n"


def render(spec: ManifestSpec, envs: Sequence[str]) -> dict[str, str]:
    """Render ``base/`` and ``overlays/<env>/`` as YAML text keyed by relative POSIX path.

    Raises:
        RenderError: an input is invalid (see ``ManifestSpec.validate``) or an env name is not
            a DNS label.
    """
    if not envs:
        raise RenderError("at least one environment is needed", where="env")
    for env in envs:
        if not _DNS_LABEL.match(env):
            raise RenderError(f"environment {env!r} must be a DNS label", where="env")
    base = base_resources(spec)
    files = {f"base/{name}": _HEADER + _dump(doc) for name, doc in base.items()}
    files["base/kustomization.yaml"] = _HEADER + _dump(
        {"apiVersion": KUSTOMIZE_API, "kind": "Kustomization", "resources": list(base)}
    )
    for env in dict.fromkeys(envs):
        for name, doc in _overlay(spec, env).items():
            files[f"overlays/{env}/{name}"] = _HEADER + _dump(doc)
    return files


def write_tree(files: Mapping[str, str], out_dir: Path) -> list[Path]:
    """Write rendered files under ``out_dir`` (created as needed); returns the paths written."""
    written = []
    for relative, text in files.items():
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
