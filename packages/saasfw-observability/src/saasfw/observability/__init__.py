"""saasfw.observability: correlated logs, RED metrics and traces for ASGI services.

The whole setup in three lines::

    observability = setup_observability(ObservabilitySettings(service_name="orders"))
    observability.install(app)            # middleware + /metrics
    # and enter observability.lifespan() from the app's lifespan

Ports for other packages: :func:`get_correlation_id` and :func:`current_trace_ids`.
"""

from typing import TYPE_CHECKING

from saasfw.core import lazy_exports
from saasfw.observability._access import AccessLog, JsonLinesAccessLog, LoggingAccessLog
from saasfw.observability._context import current_trace_ids, get_correlation_id
from saasfw.observability._errors import (
    MissingExtraError,
    ObservabilityConfigError,
    ObservabilityError,
)
from saasfw.observability._logging import (
    Redactor,
    add_request_context,
    colours_wanted,
    configure_logging,
)
from saasfw.observability._metrics import MetricsApp, RedMetrics, red_metrics
from saasfw.observability._middleware import ObservabilityMiddleware
from saasfw.observability._rules import production_problems
from saasfw.observability._settings import (
    AccessLogSettings,
    CorrelationSettings,
    LoggingSettings,
    MetricsSettings,
    ObservabilitySettings,
    TracingSettings,
)
from saasfw.observability._setup import Observability, setup_observability
from saasfw.observability._tracing import configure_tracing
from saasfw.observability._version import __version__

if TYPE_CHECKING:
    from saasfw.observability._httpx import (
        SyncTracingTransport,
        TracingTransport,
        create_async_client,
        create_client,
    )

# httpx costs a noticeable share of start-up (it imports its CLI's dependencies when they
# are installed); services that make no outgoing calls should not pay for it.
_LAZY = dict.fromkeys(
    ("SyncTracingTransport", "TracingTransport", "create_async_client", "create_client"),
    "saasfw.observability._httpx",
)
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "AccessLog",
    "AccessLogSettings",
    "CorrelationSettings",
    "JsonLinesAccessLog",
    "LoggingAccessLog",
    "LoggingSettings",
    "MetricsApp",
    "MetricsSettings",
    "MissingExtraError",
    "Observability",
    "ObservabilityConfigError",
    "ObservabilityError",
    "ObservabilityMiddleware",
    "ObservabilitySettings",
    "RedMetrics",
    "Redactor",
    "SyncTracingTransport",
    "TracingSettings",
    "TracingTransport",
    "__version__",
    "add_request_context",
    "colours_wanted",
    "configure_logging",
    "configure_tracing",
    "create_async_client",
    "create_client",
    "current_trace_ids",
    "get_correlation_id",
    "production_problems",
    "red_metrics",
    "setup_observability",
]
