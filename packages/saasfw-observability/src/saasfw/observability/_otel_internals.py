"""The one place that reads private attributes of the OpenTelemetry SDK's tracer provider.

The middleware's fast server span (:mod:`saasfw.observability._serverspan`) needs three
things the SDK keeps private: the provider's live processor tuple
(``provider._active_span_processor._span_processors``), its span limits
(``provider._span_limits``) and whether its tracer is enabled (``tracer._is_enabled()``,
SDK 1.3x+ only). Every read of those names is here, and each has a fallback that keeps the
service correct when a release renames or drops them:

- no processor tuple: :func:`processor_view` returns None and the middleware uses the
  SDK's own tracer for every span (correct, only slower);
- no span limits: :func:`span_limits` returns ``SpanLimits()``, which reads the same
  ``OTEL_*_LIMIT`` environment variables the SDK's provider reads by default;
- no ``_is_enabled``: :func:`tracer_enabled` answers True (SDK releases without it have no
  way to disable a tracer, so True is what they do).

``tests/test_otel_internals.py`` runs each function against a real provider and against
objects without the attributes; CI runs it at the newest and at the lowest SDK the
pyproject allows (``scripts/check_adapters.py``).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import SpanLimits, SpanProcessor

__all__ = ["ProcessorView", "processor_view", "span_limits", "tracer_enabled"]


class ProcessorView:
    """A live view of one provider's processors (adding a processor replaces its tuple)."""

    __slots__ = ("_multi",)

    def __init__(self, multi: Any) -> None:
        self._multi = multi

    def current(self) -> tuple[SpanProcessor, ...]:
        """The provider's processors right now, in the order it calls them."""
        processors: tuple[SpanProcessor, ...] = self._multi._span_processors
        return processors


def processor_view(provider: Any) -> ProcessorView | None:
    """A view of ``provider``'s processors, or None when its layout is not the one known.

    None means: the provider keeps no ``_active_span_processor`` holding a tuple at
    ``_span_processors`` (another SDK release, or another provider); the caller must then
    let the SDK make its spans.
    """
    multi = getattr(provider, "_active_span_processor", None)
    if not isinstance(getattr(multi, "_span_processors", None), tuple):
        return None
    return ProcessorView(multi)


def span_limits(provider: Any) -> SpanLimits:
    """The span limits ``provider`` applies, or the SDK's defaults (from the environment)."""
    limits = getattr(provider, "_span_limits", None)
    return limits if isinstance(limits, SpanLimits) else SpanLimits()


def tracer_enabled(tracer: Any) -> bool:
    """Whether ``tracer`` records at all; True when the SDK has no such switch."""
    is_enabled = getattr(tracer, "_is_enabled", None)
    return True if is_enabled is None else bool(is_enabled())
