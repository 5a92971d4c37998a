"""Render a service's Kustomize base and per-environment overlays as YAML files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from saasfw.k8s._base import base_resources
from saasfw.k8s._errors import RenderError
from saasfw.k8s._overlay import KUSTOMIZE_API, overlay
from saasfw.k8s._spec import DNS_LABEL, ManifestSpec
from saasfw.k8s._yaml import dump

KUBERNETES_VERSION = "1.33"
"""The Kubernetes version whose schemas the rendered manifests are validated against."""

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
        if not DNS_LABEL.match(env):
            raise RenderError(f"environment {env!r} must be a DNS label", where="env")
    base = base_resources(spec)
    files = {f"base/{name}": _HEADER + dump(doc) for name, doc in base.items()}
    files["base/kustomization.yaml"] = _HEADER + dump(
        {"apiVersion": KUSTOMIZE_API, "kind": "Kustomization", "resources": list(base)}
    )
    for env in dict.fromkeys(envs):
        for name, doc in overlay(spec, env).items():
            files[f"overlays/{env}/{name}"] = _HEADER + dump(doc)
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
