"""Production safety checks over the observability settings, as a plain callable."""

from __future__ import annotations

from saasfw.observability._settings import DEFAULT_REDACT_KEYS, ObservabilitySettings


def production_problems(settings: ObservabilitySettings) -> list[str]:
    """What in these settings is unsafe for production; empty when nothing is.

    A plain callable over the section, so ``saasfw.config`` (or the umbrella) registers it
    as a production rule and standalone services can call it at start-up:
    ``add_section_check("observability", "observability", production_problems)``.
    """
    problems: list[str] = []
    if settings.log_format() != "json":
        problems.append(
            "logging.format: console output in production is not machine-parseable; use json"
        )
    if settings.logging.level == "DEBUG":
        problems.append("logging.level: DEBUG in production logs request data; use INFO or above")
    missing = [
        k
        for k in ("password", "token", "authorization", "secret", "cookie")
        if not any(k in key.lower().replace("-", "_") for key in settings.logging.redact_keys)
    ]
    if missing:
        problems.append(
            f"logging.redact_keys: values of keys containing {missing} would be logged in "
            f"clear; keep the defaults {list(DEFAULT_REDACT_KEYS)}"
        )
    if settings.logging.show_locals:
        problems.append(
            "logging.show_locals: tracebacks would print frame locals (secrets, SQL "
            "parameters); leave it off outside development"
        )
    if settings.tracing.enabled and settings.tracing.exporter == "console":
        problems.append(
            "tracing.exporter: console export writes every span to stdout; use otlp or none"
        )
    if not settings.correlation.enabled:
        problems.append("correlation.enabled: requests cannot be followed across services")
    return problems
