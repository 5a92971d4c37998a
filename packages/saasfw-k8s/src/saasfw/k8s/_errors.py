"""The one exception tree of saasfw.k8s."""

from __future__ import annotations


class K8sError(Exception):
    """Base of every error raised by saasfw.k8s.

    Attributes:
        where: what the error is about (a check name, a file, a settings key), or ``None``.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


class HealthConfigError(K8sError):
    """A health check or group was registered wrongly (duplicate name, bad timeout, ...)."""


class LifecycleError(K8sError):
    """A lifecycle hook was registered wrongly or the lifecycle was used out of order."""


class RenderError(K8sError):
    """Manifests cannot be rendered from the given inputs (invalid name, unsafe setting, ...)."""


class KustomizeError(K8sError):
    """A kustomization uses a feature the built-in builder does not support, or is invalid."""


class ManifestValidationError(K8sError):
    """A rendered manifest does not validate against the Kubernetes JSON schema."""


class MissingExtraError(K8sError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"{module} is not installed: install it with `pip install 'saasfw-k8s[{extra}]'`",
            where=module,
        )
        self.extra = extra
