import tomllib
from pathlib import Path

import saasfw.observability


def test_public_surface_is_pinned_and_sorted() -> None:
    assert saasfw.observability.__all__ == sorted(saasfw.observability.__all__)
    assert saasfw.observability.__all__ == [
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
    for name in saasfw.observability.__all__:
        assert hasattr(saasfw.observability, name), name


def test_version_comes_from_distribution_metadata() -> None:
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert saasfw.observability.__version__ == project["project"]["version"]


def test_errors_share_one_base() -> None:
    from saasfw.observability import (
        MissingExtraError,
        ObservabilityConfigError,
        ObservabilityError,
    )

    assert issubclass(MissingExtraError, ObservabilityError)
    assert issubclass(MissingExtraError, ImportError)
    assert issubclass(ObservabilityConfigError, ObservabilityError)
    assert issubclass(ObservabilityConfigError, ValueError)
    error = MissingExtraError("OTLP trace export", "otlp")
    assert error.extra == "otlp"
    assert "saasfw-observability[otlp]" in str(error)
