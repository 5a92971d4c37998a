"""The package's exception tree: one base, a few precise subclasses."""

from __future__ import annotations


class ObservabilityError(Exception):
    """Base of every error raised by saasfw.observability.

    Attributes:
        setting: the dotted settings path the error is about, when there is one.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class ObservabilityConfigError(ObservabilityError, ValueError):
    """A setting or argument cannot work (for example an unknown exporter)."""


class MissingExtraError(ObservabilityError, ImportError):
    """An optional integration was requested but its extra is not installed.

    Attributes:
        extra: the name of the extra that provides it, e.g. ``otlp``.
    """

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the '{extra}' extra: pip install 'saasfw-observability[{extra}]'"
        )
        self.extra = extra
