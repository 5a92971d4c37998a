"""The inputs of a render: the service's ``ManifestSpec`` and the environment profiles."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from saasfw.k8s._errors import RenderError
from saasfw.k8s._settings import K8sSettings

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")

MAX_SURGE_PERCENT = 25
"""The Deployment's rolling-update surge, as a percentage of its replicas."""


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


def profile_for(env: str) -> EnvironmentProfile:
    """The development profile for development-like names, else (fail safe) production."""
    return PROFILES["development" if env in _DEVELOPMENT_NAMES else "production"]


def max_instances(profile: EnvironmentProfile) -> int:
    """How many pods may run at once: the autoscaler's maximum plus the rollout surge.

    Kubernetes rounds a percentage surge up, so at 10 replicas a 25% surge adds 3 pods of
    the new version while the 10 old ones still serve.
    """
    return profile.max_replicas + math.ceil(profile.max_replicas * MAX_SURGE_PERCENT / 100)


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
            if not DNS_LABEL.match(value) or len(value) > 50:
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
