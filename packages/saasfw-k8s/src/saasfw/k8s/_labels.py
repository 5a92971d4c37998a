"""The names, labels and metadata that every rendered document of a service shares."""

from __future__ import annotations

from typing import Any

from saasfw.k8s._spec import ManifestSpec


def labels(spec: ManifestSpec) -> dict[str, str]:
    """The recommended ``app.kubernetes.io`` labels of every document of the service."""
    return {
        "app.kubernetes.io/name": spec.service,
        "app.kubernetes.io/part-of": "saasfw",
        "app.kubernetes.io/managed-by": "saasfw-k8s",
    }


def selector(spec: ManifestSpec) -> dict[str, str]:
    """The labels that select the service's pods (and only them)."""
    return {"app.kubernetes.io/name": spec.service}


def meta(spec: ManifestSpec, name: str, *, namespaced: bool = True) -> dict[str, Any]:
    """``metadata`` of a document called ``name``: namespace (unless cluster-wide), labels."""
    result: dict[str, Any] = {"name": name}
    if namespaced:
        result["namespace"] = spec.ns
    result["labels"] = labels(spec)
    return result


def config_map_name(spec: ManifestSpec) -> str:
    """The name of the ConfigMap the pods read their environment from."""
    return f"{spec.service}-config"
