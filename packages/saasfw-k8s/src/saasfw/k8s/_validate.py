"""Validate manifests against the Kubernetes JSON schemas bundled by kubernetes-validate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from saasfw.k8s._errors import ManifestValidationError, MissingExtraError
from saasfw.k8s._manifests import KUBERNETES_VERSION

CUSTOM_RESOURCE_KINDS = frozenset(
    {("monitoring.coreos.com", "ServiceMonitor"), ("gateway.networking.k8s.io", "HTTPRoute")}
)
"""Kinds defined by CRDs: kubernetes-validate has no schema for them, so they are skipped."""


def validate_manifests(
    resources: Iterable[Mapping[str, Any]], *, version: str = KUBERNETES_VERSION
) -> list[str]:
    """Validate each resource strictly (unknown fields fail); return the kinds/names checked.

    Raises:
        ManifestValidationError: a resource does not validate (the message names it and the
            failing field path).
        MissingExtraError: kubernetes-validate is not installed (``saasfw-k8s[validate]``).
    """
    try:
        import kubernetes_validate
    except ImportError as exc:
        raise MissingExtraError("validate", "kubernetes-validate") from exc
    checked: list[str] = []
    for resource in resources:
        api_version = str(resource.get("apiVersion", ""))
        kind = str(resource.get("kind", ""))
        name = str((resource.get("metadata") or {}).get("name", "?"))
        label = f"{kind}/{name}"
        if (api_version.rpartition("/")[0], kind) in CUSTOM_RESOURCE_KINDS:
            continue
        try:
            kubernetes_validate.validate(dict(resource), version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(root)"
            raise ManifestValidationError(
                f"{label} does not validate against Kubernetes {version} at {where}: {exc.message}",
                where=label,
            ) from None
        except kubernetes_validate.SchemaNotFoundError as exc:
            raise ManifestValidationError(
                f"{label}: Kubernetes {version} has no schema for {api_version} {kind} "
                f"({exc.message})",
                where=label,
            ) from None
        checked.append(label)
    return checked
