"""The middleware's server span, recorded without the SDK's per-span bookkeeping.

The OpenTelemetry SDK's ``Span`` validates and copies every attribute under a lock, keeps
bounded containers for events and links, and copies itself into a ``ReadableSpan`` when
it ends: about three quarters of what one request through the middleware costs. The
server span the middleware makes has a known shape (its own attributes are plain strings
and integers), so :class:`ServerSpan` records into plain fields and builds the one
``ReadableSpan`` the processors receive when it ends.

What stays exactly as with the SDK: the provider's sampler decides (a request it does
not record gets a non-recording span with valid ids, as before), ids come from the
provider's id generator, the span carries the provider's resource, and the provider's
processors receive the finished span, including processors added after start-up. What
user code does to the current span during a request (``set_attribute``, ``add_event``,
``record_exception``, ``set_status``, ``update_name``, ``add_link``) is recorded with the
provider's span limits, validated as the SDK validates it.

The fast path is used only for the SDK's ``TracerProvider`` whose processors are all the
SDK's ``BatchSpanProcessor``/``SimpleSpanProcessor`` (their ``on_start`` does nothing); with
any other processor, or another provider, the middleware uses the SDK's tracer as before.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from time import time_ns
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    TracerProvider,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    get_current_span,
)
from opentelemetry.util import types

from saasfw.observability._otel_internals import (
    ProcessorView,
    processor_view,
    span_limits,
    tracer_enabled,
)

__all__ = ["ServerSpan", "ServerSpans"]

_log = logging.getLogger("saasfw.observability")
# Processors whose on_start and _on_ending do nothing: a span they receive only at its end
# needs nothing from the SDK's Span while it runs.
_END_ONLY_PROCESSORS = (BatchSpanProcessor, SimpleSpanProcessor)


class ServerSpans:
    """Starts server spans for one SDK :class:`TracerProvider`.

    Build with :meth:`for_provider`, which returns None when the provider is not one this
    fast path can serve; :meth:`start` returns None when the provider's processors have
    since changed to ones it cannot serve. In both cases use the SDK tracer instead.
    """

    def __init__(
        self, provider: TracerProvider, view: ProcessorView, tracer: Any, scope_name: str
    ) -> None:
        self._tracer = tracer
        self._view = view
        self._checked: tuple[SpanProcessor, ...] | None = None
        self._servable = False
        self.sampler = tracer.sampler
        self.id_generator = tracer.id_generator
        # W3C Trace Context level 2's random-trace-id flag: set as the SDK sets it, where
        # the SDK knows it (1.3x releases before it never set the flag).
        self.random_flag = hasattr(TraceFlags, "RANDOM_TRACE_ID") and callable(
            getattr(self.id_generator, "is_trace_id_random", None)
        )
        self.resource = provider.resource
        self.scope = InstrumentationScope(scope_name)
        self.limits: SpanLimits = span_limits(provider)

    @classmethod
    def for_provider(cls, provider: Any, scope_name: str) -> ServerSpans | None:
        """The fast path for ``provider``, or None when it must use the SDK tracer."""
        if not isinstance(provider, TracerProvider):
            return None
        view = processor_view(provider)
        if view is None:
            return None
        tracer = provider.get_tracer(scope_name)
        if not all(hasattr(tracer, name) for name in ("sampler", "id_generator")):
            return None
        return cls(provider, view, tracer, scope_name)

    def processors(self) -> tuple[SpanProcessor, ...] | None:
        """The provider's processors when all are end-only, else None (checked once per
        change: adding a processor replaces the provider's tuple)."""
        current = self._view.current()
        if current is not self._checked:
            self._servable = all(type(p) in _END_ONLY_PROCESSORS for p in current)
            self._checked = current
        return current if self._servable else None

    def processors_now(self) -> tuple[SpanProcessor, ...]:
        """The provider's processors at this moment, whatever their kind."""
        return self._view.current()

    def start(self, name: str, parent: Context) -> Span | None:
        """A server span whose parent is the span in ``parent`` (from the request headers);
        None when the SDK tracer must make it (see the class docstring)."""
        if self.processors() is None:
            return None
        if not tracer_enabled(self._tracer):
            return None  # the SDK tracer returns its non-recording span
        parent_context = get_current_span(parent).get_span_context()
        generator = self.id_generator
        parent_span: SpanContext | None
        if parent_context.is_valid:
            parent_span = parent_context
            trace_id = parent_context.trace_id
            random_id = self.random_flag and parent_context.trace_flags.random_trace_id
        else:
            parent_span = None
            trace_id = generator.generate_trace_id()
            random_id = self.random_flag and generator.is_trace_id_random()
        result = self.sampler.should_sample(parent, trace_id, name, SpanKind.SERVER, None, ())
        flags = TraceFlags.SAMPLED if result.decision.is_sampled() else TraceFlags.DEFAULT
        if random_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        context = SpanContext(
            trace_id,
            generator.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=result.trace_state,
        )
        if not result.decision.is_recording():
            return NonRecordingSpan(context)
        return ServerSpan(self, name, context, parent_span, result.attributes)


class ServerSpan(Span):
    """A recording SERVER span handed to the provider's processors when it ends."""

    __slots__ = (
        "_attributes",
        "_context",
        "_end_time",
        "_events",
        "_links",
        "_name",
        "_own",
        "_parent",
        "_spans",
        "_start_time",
        "_status",
    )

    def __init__(
        self,
        spans: ServerSpans,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        sampler_attributes: types.Attributes = None,
    ) -> None:
        self._spans = spans
        self._name = name
        self._context = context
        self._parent = parent
        self._start_time = time_ns()
        self._end_time: int | None = None
        # What anyone but the middleware sets is validated into BoundedAttributes; the
        # middleware's own attributes (known strings and integers) stay a plain dict.
        self._attributes: BoundedAttributes | None = None
        self._own: dict[str, Any] | None = None
        self._events: list[Event] | None = None
        self._links: list[Link] | None = None
        self._status = Status(StatusCode.UNSET)
        if sampler_attributes:
            self.set_attributes(sampler_attributes)

    # -- the Span API ---------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def _ended(self, what: str) -> bool:
        if self._end_time is None:
            return False
        _log.warning("%s on an ended span", what)
        return True

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._ended("set_attributes"):
            return
        bounded = self._attributes
        if bounded is None:
            limits = self._spans.limits
            bounded = self._attributes = BoundedAttributes(
                limits.max_span_attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
        for key, value in attributes.items():
            bounded[key] = value

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self.set_attributes({key: value})

    def set_own_attributes(self, attributes: dict[str, Any]) -> None:
        """The middleware's attributes (str/int values it built): kept without copying."""
        if self._end_time is None:
            self._own = attributes

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        if self._ended("add_event"):
            return
        limits = self._spans.limits
        if self._events is None:
            self._events = []
        bounded = _bounded(
            self._events, limits.max_events, limits.max_event_attributes, limits, attributes
        )
        if bounded is not None:
            when = timestamp if timestamp is not None else time_ns()
            self._events.append(Event(name, bounded, when))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._ended("add_link") or not context.is_valid:
            return
        limits = self._spans.limits
        if self._links is None:
            self._links = []
        bounded = _bounded(
            self._links, limits.max_links, limits.max_link_attributes, limits, attributes
        )
        if bounded is not None:
            self._links.append(Link(context, bounded))

    def update_name(self, name: str) -> None:
        if not self._ended("update_name"):
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended("set_status") or self._status.status_code is StatusCode.OK:
            return  # OK is final
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        qualified = (
            kind.__qualname__
            if kind.__module__ in (None, "builtins")
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        fields: dict[str, types.AnyValue] = {
            "exception.type": qualified,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            fields.update(attributes)
        self.add_event("exception", fields, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            _log.warning("end on an ended span")
            return
        self._end_time = end_time if end_time is not None else time_ns()
        # The provider's processors now: one added while this span ran (even one that
        # needs the SDK's span, which later requests get) receives it, as any on_end does.
        processors = self._spans.processors_now()
        finished = ReadableSpan(
            name=self._name,
            context=self._context,
            parent=self._parent,
            resource=self._spans.resource,
            attributes=self._merged_attributes(),
            events=tuple(self._events) if self._events else (),
            links=tuple(self._links) if self._links else (),
            kind=SpanKind.SERVER,
            status=self._status,
            start_time=self._start_time,
            end_time=self._end_time,
            instrumentation_scope=self._spans.scope,
        )
        for processor in processors:
            processor.on_end(finished)

    def _merged_attributes(self) -> Mapping[str, Any] | None:
        others, own = self._attributes, self._own
        if others is None:
            return own
        if own:
            # Rare (user code set attributes on the server span): validate ours into the
            # same bounded set; the middleware's values win, as if set last. Nothing
            # writes to it after the span ended (set_attributes refuses).
            for key, value in own.items():
                others[key] = value
        return others

    def __repr__(self) -> str:
        return f"ServerSpan(name={self._name!r}, context={self._context!r})"


def _bounded(
    items: list[Any],
    max_items: int | None,
    max_attributes: int | None,
    limits: SpanLimits,
    attributes: types.Attributes,
) -> BoundedAttributes | None:
    """The attributes of one more event or link, validated and cut to the span limits; None
    when the span already holds as many as the limits allow (the new one is dropped, as the
    SDK drops it)."""
    if max_items is not None and len(items) >= max_items:
        return None
    return BoundedAttributes(
        max_attributes, attributes, immutable=True, max_value_len=limits.max_attribute_length
    )
