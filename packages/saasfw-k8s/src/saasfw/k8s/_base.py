"""The Kustomize base: every document of a service by file name, one builder per resource."""

from __future__ import annotations

from typing import Any

from saasfw.k8s._deployment import deployment
from saasfw.k8s._labels import config_map_name, labels, meta, selector
from saasfw.k8s._migration_job import add_migration_job
from saasfw.k8s._spec import ManifestSpec


def _namespace(spec: ManifestSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": spec.ns,
            "labels": {
                **labels(spec),
                # The pods satisfy the "restricted" Pod Security Standard; enforce it.
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def _service_account(spec: ManifestSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(spec, spec.service),
        "automountServiceAccountToken": False,
    }


def _config_map(spec: ManifestSpec) -> dict[str, Any]:
    # Empty in the base: each overlay patches in its environment's variables.
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta(spec, config_map_name(spec)),
        "data": {},
    }


def _service(spec: ManifestSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(spec, spec.service),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _autoscaler(spec: ManifestSpec) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(spec, spec.service),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.service},
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
    }


def _disruption_budget(spec: ManifestSpec) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(spec, spec.service),
        "spec": {
            # maxUnavailable (not minAvailable) so a single-replica dev pod never blocks a
            # node drain.
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(spec)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def _default_deny(spec: ManifestSpec) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(spec, "default-deny-all"),
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def _network_policy(spec: ManifestSpec) -> dict[str, Any]:
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
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(spec, spec.service),
        "spec": {
            "podSelector": {"matchLabels": selector(spec)},
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


def _service_monitor(spec: ManifestSpec) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta(spec, spec.service),
        "spec": {
            "selector": {"matchLabels": selector(spec)},
            "namespaceSelector": {"matchNames": [spec.ns]},
            "endpoints": [{"port": "http", "path": spec.metrics_path, "interval": "30s"}],
        },
    }


def _http_route(spec: ManifestSpec, gateway: str) -> dict[str, Any]:
    gw_ns, _, gw_name = gateway.rpartition("/")
    parent: dict[str, Any] = {"name": gw_name}
    if gw_ns:
        parent["namespace"] = gw_ns
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta(spec, spec.service),
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


def base_resources(spec: ManifestSpec) -> dict[str, dict[str, Any]]:
    """The base manifests by file name, in apply order."""
    spec.validate()
    files: dict[str, dict[str, Any]] = {
        "namespace.yaml": _namespace(spec),
        "serviceaccount.yaml": _service_account(spec),
        "configmap.yaml": _config_map(spec),
        "deployment.yaml": deployment(spec),
        "service.yaml": _service(spec),
        "hpa.yaml": _autoscaler(spec),
        "pdb.yaml": _disruption_budget(spec),
        "networkpolicy-default-deny.yaml": _default_deny(spec),
        "networkpolicy.yaml": _network_policy(spec),
    }
    if spec.k8s.migrations == "job":
        add_migration_job(files, spec.service, spec.k8s.migration_job)
    if spec.service_monitor:
        files["servicemonitor.yaml"] = _service_monitor(spec)
    if spec.route_hostnames and spec.gateway:
        files["httproute.yaml"] = _http_route(spec, spec.gateway)
    return files
