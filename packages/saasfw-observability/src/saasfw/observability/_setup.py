"""One call that configures logging, metrics and tracing from settings, and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import anyio.to_thread

from saasfw.observability._access import AccessLog, JsonLinesAccessLog, LoggingAccessLog
from saasfw.observability._logging import configure_logging, flush_log_handlers
from saasfw.observability._metrics import MetricsApp, RedMetrics, multiprocess_mode, red_metrics
from saasfw.observability._middleware import ObservabilityMiddleware
from saasfw.observability._settings import ObservabilitySettings
from saasfw.observability._tracing import configure_tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from prometheus_client import CollectorRegistry
    from starlette.applications import Starlette


class Observability:
    """The logging, metrics and tracing of one service, built from its settings.

    Build it with :func:`setup_observability`; then :meth:`install` it on the app and enter
    :meth:`lifespan` from the app's lifespan so queued spans and buffered lines are flushed
    on shutdown.
    """

    def __init__(
        self,
        settings: ObservabilitySettings,
        *,
        tracer_provider: TracerProvider | None,
        metrics: RedMetrics | None,
        access_log: AccessLog | None,
    ) -> None:
        self.settings = settings
        self.tracer_provider = tracer_provider
        self.metrics = metrics
        self.access_log = access_log
        self.metrics_app = MetricsApp(
            metrics.registry if metrics is not None else None, metrics=metrics
        )
        self._closed = False

    def middleware_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`ObservabilityMiddleware` (``app.add_middleware``)."""
        settings = self.settings
        return {
            "correlation": settings.correlation if settings.correlation.enabled else None,
            "metrics": self.metrics,
            "tracer_provider": self.tracer_provider,
            "access_log": self.access_log,
            "excluded_paths": settings.excluded_paths,
        }

    def install(self, app: Starlette) -> None:
        """Add the middleware and, when metrics are on, the metrics route to ``app``.

        Call it after adding the app's other middleware: Starlette makes the last one added
        the outermost, and this one should see every request first, so that the
        correlation id and the server span exist while the other middleware runs.
        """
        app.add_middleware(ObservabilityMiddleware, **self.middleware_options())
        if self.metrics is not None:
            app.add_route(
                self.settings.metrics.path,
                cast(Any, self.metrics_app),
                methods=["GET", "HEAD"],
                include_in_schema=False,
            )

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Flush the access log periodically while the app runs; shut everything down after.

        Compose it with your own lifespan::

            @asynccontextmanager
            async def lifespan(app):
                async with observability.lifespan():
                    yield
        """
        flusher: asyncio.Task[None] | None = None
        if isinstance(self.access_log, JsonLinesAccessLog):
            flusher = asyncio.create_task(
                _flush_every(self.access_log, self.settings.access_log.flush_interval)
            )
        if self.metrics is not None:
            self.metrics.start_in_flight_sync()
        try:
            yield
        finally:
            if flusher is not None:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
            # Span export may block on the network: keep it off the event loop.
            await anyio.to_thread.run_sync(self.shutdown)

    def shutdown(self) -> None:
        """Flush and close the access log, export queued spans, flush log handlers. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self.access_log is not None:
            self.access_log.close()
        if self.tracer_provider is not None:
            self.tracer_provider.force_flush()
            self.tracer_provider.shutdown()
        if self.metrics is not None:
            self.metrics.stop_in_flight_sync()
            if multiprocess_mode():
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
        flush_log_handlers()


async def _flush_every(access_log: AccessLog, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        access_log.flush()


def setup_observability(
    settings: ObservabilitySettings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    span_exporter: SpanExporter | None = None,
    span_processor: SpanProcessor | None = None,
    set_global_tracer_provider: bool = True,
    logging: bool = True,
) -> Observability:
    """Configure logging, metrics and tracing for a service from its settings.

    Args:
        settings: the observability section; defaults are safe.
        registry: Prometheus registry for the RED metrics (default: prometheus-client's
            global registry, so your own metrics appear at /metrics too). Tests pass a
            fresh ``CollectorRegistry()`` each.
        span_exporter: export spans here (batched) instead of the configured exporter.
        span_processor: use this span processor instead (e.g. SimpleSpanProcessor in tests).
        set_global_tracer_provider: install the provider as OpenTelemetry's global one.
        logging: configure structlog and the standard library (process-wide).
    """
    settings = settings if settings is not None else ObservabilitySettings()
    if logging:
        configure_logging(settings)
    metrics = (
        red_metrics(registry, buckets=settings.metrics.buckets)
        if settings.metrics.enabled
        else None
    )
    tracer_provider = configure_tracing(
        settings,
        span_exporter=span_exporter,
        span_processor=span_processor,
        set_global=set_global_tracer_provider,
    )
    access_log: AccessLog | None = None
    if settings.access_log.enabled:
        if settings.access_log.file is not None:
            access_log = JsonLinesAccessLog(
                settings.access_log.file,
                buffer_size=settings.access_log.buffer_size,
                flush_interval=settings.access_log.flush_interval,
            )
        else:
            access_log = LoggingAccessLog()
    return Observability(
        settings, tracer_provider=tracer_provider, metrics=metrics, access_log=access_log
    )
