"""Request-scoped context: the correlation id and the current trace ids (the ports)."""

from __future__ import annotations

from contextvars import ContextVar

from opentelemetry.trace import get_current_span

correlation_id_var: ContextVar[str | None] = ContextVar("saasfw_correlation_id", default=None)


def get_correlation_id() -> str | None:
    """Return the correlation id of the request being handled, or None outside a request.

    This is the port other packages (audit, the umbrella) call; it reads a contextvar, so
    it is correct across concurrent requests, tasks spawned inside a request, and threads
    started with ``contextvars.copy_context()`` (as Starlette's threadpool does).
    """
    return correlation_id_var.get()


def current_trace_ids() -> tuple[str, str] | None:
    """Return ``(trace_id, span_id)`` of the current span as W3C hex strings, or None.

    None when no span is active (tracing off, or outside a request). Ids are returned for
    unsampled spans too: they still identify the request across services.
    """
    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
