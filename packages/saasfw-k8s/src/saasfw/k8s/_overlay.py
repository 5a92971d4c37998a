"""One environment's Kustomize overlay: its config, resources and scale bounds as patches."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from saasfw.k8s._labels import config_map_name
from saasfw.k8s._spec import ManifestSpec, max_instances, profile_for
from saasfw.k8s._yaml import dump

KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"


def overlay(spec: ManifestSpec, env: str) -> dict[str, Any]:
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
                "patch": dump(hpa_ops),
            },
        ],
    }
    return {
        "kustomization.yaml": kustomization,
        "configmap.yaml": config_patch,
        "deployment.yaml": deployment_patch,
    }
