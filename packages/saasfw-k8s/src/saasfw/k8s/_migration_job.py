"""The migration Job: the Deployment's image, env and secrets running the migration command.

Rendered with ``k8s.migrations: job``. The Job is built from the rendered Deployment's pod,
so it cannot drift from it (same image, ``env``, ``envFrom`` ConfigMap and Secrets, volumes,
service account, security context), and the Deployment gets
``SAASFW_DB__MIGRATE_ON_START=false``: its pods only check, and stay out of readiness while
the schema is behind, so a rolling update waits for the Job (``maxUnavailable: 0`` keeps
the old pods serving meanwhile).

Job templates are immutable; the name carries a hash of the pod template, so a new image
or command is a new Job (the old one is deleted ``ttlSecondsAfterFinished`` after it ended)
and applying the same manifests again is a no-op.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from saasfw.k8s._settings import MigrationJobSettings

MIGRATE_ON_START_VAR = "SAASFW_DB__MIGRATE_ON_START"
"""saasfw.db's switch (``DbSettings.migrate_on_start``), set to ``false`` on the Deployment."""
SERVICE_NAME_VAR = "SAASFW_SERVICE_NAME"
VERSIONS_VAR = "SAASFW_DB_MIGRATIONS"
_NAME_LIMIT = 63  # Job names end up in the pods' job-name label: a label value


def _component_labels(service: str) -> dict[str, str]:
    # Not the Deployment's selector labels: the Service, PDB and topology spread must never
    # count a migration pod as one of the service's pods.
    return {
        "app.kubernetes.io/name": f"{service}-migrate",
        "app.kubernetes.io/component": "migration",
        "app.kubernetes.io/part-of": "saasfw",
        "app.kubernetes.io/managed-by": "saasfw-k8s",
    }


def job_name(service: str, template: dict[str, Any]) -> str:
    """``<service>-migrate-<hash of the pod template>``, at most 63 characters."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    suffix = f"-migrate-{digest}"
    return service[: _NAME_LIMIT - len(suffix)].rstrip("-") + suffix


def _job_container(app: dict[str, Any], service: str, job: MigrationJobSettings) -> dict[str, Any]:
    env = [e for e in app.get("env", []) if e["name"] not in (SERVICE_NAME_VAR, VERSIONS_VAR)]
    env.append({"name": SERVICE_NAME_VAR, "value": service})
    if job.versions is not None:
        env.append({"name": VERSIONS_VAR, "value": job.versions})
    container = {
        "name": "migrate",
        "image": app["image"],
        "imagePullPolicy": app.get("imagePullPolicy", "IfNotPresent"),
        "command": list(job.command),
        "env": env,
        "envFrom": copy.deepcopy(app.get("envFrom", [])),
        "resources": copy.deepcopy(app.get("resources", {})),
        "securityContext": copy.deepcopy(app.get("securityContext", {})),
        "volumeMounts": copy.deepcopy(app.get("volumeMounts", [])),
    }
    return {key: value for key, value in container.items() if value != []}


def migration_job(
    service: str, deployment: dict[str, Any], job: MigrationJobSettings
) -> dict[str, Any]:
    """A ``batch/v1`` Job running ``job.command`` in the Deployment's pod environment."""
    pod = deployment["spec"]["template"]["spec"]
    app = pod["containers"][0]
    labels = _component_labels(service)
    pod_spec: dict[str, Any] = {
        key: copy.deepcopy(pod[key])
        for key in (
            "serviceAccountName",
            "automountServiceAccountToken",
            "enableServiceLinks",
            "securityContext",
            "volumes",
        )
        if key in pod
    }
    pod_spec["restartPolicy"] = "Never"  # a failed run is a new pod: each attempt keeps its log
    pod_spec["containers"] = [_job_container(app, service, job)]
    template = {"metadata": {"labels": dict(labels)}, "spec": pod_spec}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(service, template),
            "namespace": deployment["metadata"]["namespace"],
            "labels": labels,
        },
        "spec": {
            "backoffLimit": job.backoff_limit,
            "activeDeadlineSeconds": job.active_deadline_seconds,
            "ttlSecondsAfterFinished": job.ttl_seconds_after_finished,
            "template": template,
        },
    }


def migration_network_policy(service: str, allow: dict[str, Any]) -> dict[str, Any]:
    """The Job pods' policy: the service's egress (DNS, database), no ingress at all."""
    labels = _component_labels(service)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": f"{service}-migrate",
            "namespace": allow["metadata"]["namespace"],
            "labels": labels,
        },
        "spec": {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/name": labels["app.kubernetes.io/name"]}
            },
            "policyTypes": ["Ingress", "Egress"],
            "egress": copy.deepcopy(allow["spec"]["egress"]),
        },
    }


def add_migration_job(
    files: dict[str, dict[str, Any]], service: str, job: MigrationJobSettings
) -> None:
    """Add the Job and its NetworkPolicy to the base ``files``; stop migrating at start-up.

    ``files`` must hold ``deployment.yaml`` and ``networkpolicy.yaml`` (the service's own
    policy, whose egress the Job pods get).
    """
    deployment = files["deployment.yaml"]
    files["migration-job.yaml"] = migration_job(service, deployment, job)
    files["networkpolicy-migration.yaml"] = migration_network_policy(
        service, files["networkpolicy.yaml"]
    )
    app = deployment["spec"]["template"]["spec"]["containers"][0]
    env = [e for e in app.get("env", []) if e["name"] != MIGRATE_ON_START_VAR]
    # An explicit env entry wins over the ConfigMap's envFrom, whatever the settings say.
    env.append({"name": MIGRATE_ON_START_VAR, "value": "false"})
    app["env"] = env
