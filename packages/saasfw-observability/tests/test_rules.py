"""Production checks over the observability settings."""

from __future__ import annotations

from saasfw.observability import (
    CorrelationSettings,
    LoggingSettings,
    ObservabilitySettings,
    TracingSettings,
    production_problems,
)


def test_defaults_for_production_are_safe() -> None:
    assert production_problems(ObservabilitySettings(environment="production")) == []


def test_each_unsafe_choice_is_named_by_its_setting() -> None:
    settings = ObservabilitySettings(
        environment="production",
        logging=LoggingSettings(format="console", level="DEBUG", redact_keys=("password",)),
        tracing=TracingSettings(exporter="console"),
        correlation=CorrelationSettings(enabled=False),
    )
    problems = production_problems(settings)
    assert [p.split(":")[0] for p in problems] == [
        "logging.format",
        "logging.level",
        "logging.redact_keys",
        "tracing.exporter",
        "correlation.enabled",
    ]
    assert "'token'" in problems[2]


def test_development_console_output_is_reported_when_checked() -> None:
    # The umbrella only enforces rules in production; the check itself is plain.
    assert production_problems(ObservabilitySettings(environment="development")) == [
        "logging.format: console output in production is not machine-parseable; use json"
    ]
