"""Run a saasfw application under uvicorn, after the production rules have passed."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from saasfw.app._banner import print_banner
from saasfw.app._rules import production_rules
from saasfw.app._settings import ServiceSettings
from saasfw.config import (
    ConfigError,
    LoadedSettings,
    ProductionRules,
    UnsafeSettingsError,
    enforce_production_rules,
    redact_secrets,
)

__all__ = ["serve"]


def serve(
    app: Callable[[ServiceSettings], Any],
    loaded: LoadedSettings[Any],
    *,
    rules: ProductionRules | None = None,
    **uvicorn_options: Any,
) -> None:
    """Check ``loaded`` against the production rules, build the app, serve until SIGTERM.

    A fatal rule violation prints one report of every violation and exits with status 78
    before any port is bound. On SIGTERM readiness answers 503 at once, in-flight requests
    finish (up to ``k8s.lifecycle.drain_timeout_seconds``), the lifespan's shutdown hooks run
    (audit flush, database close, span export), and the process exits 0. One process:
    scale with replicas.

    Args:
        app: the application factory, called with the loaded settings.
        loaded: the result of :func:`saasfw.app.load_settings`.
        rules: the rules to enforce (default: :func:`saasfw.app.production_rules`).
        uvicorn_options: passed to ``uvicorn.Config``, overriding the settings.
    """
    # uvicorn (through saasfw.k8s's server) only when serving: building the app for tests,
    # a CLI or another server does not pay for importing it.
    from saasfw.k8s import serve as k8s_serve

    refuse_if_unsafe(loaded, rules if rules is not None else production_rules())
    settings: ServiceSettings = loaded.settings
    http = settings.http
    options: dict[str, Any] = {
        "access_log": http.access_log,
        "root_path": http.root_path,
        "proxy_headers": False,  # forwarded headers are resolved by saasfw.security only
        "server_header": False,
        "log_config": None,  # logging is configured by saasfw.observability
        "lifespan": "on",
    }
    options.update(uvicorn_options)
    try:
        built = app(settings)
    except Exception as exc:
        exit_with_startup_failure(loaded, exc)
    # The development banner, once the lifespan has started (so every key file exists).
    application = StartupGuard(built, on_started=lambda: print_banner(settings, built))
    try:
        k8s_serve(application, host=http.host, port=http.port, **options)
    except SystemExit:
        if application.failure is None:
            raise
    if application.failure is not None:
        exit_with_startup_failure(loaded, application.failure)


EXIT_CONFIG = 78  # EX_CONFIG, as for refused settings: the orchestrator must not retry blindly


DEVELOPMENT_HINT = (
    "  saasfw starts in production unless told otherwise, and production refuses the\n"
    "  settings above. To run on your own machine, start it in development, where keys\n"
    "  are generated and SQLite is fine:  SAASFW_ENV=development <the same command>"
)


def refuse_if_unsafe(loaded: LoadedSettings[Any], rules: ProductionRules) -> None:
    """Enforce ``rules``; a fatal violation prints the report (and, in production, how to
    run in development instead) and exits 78 before any port is bound."""
    try:
        enforce_production_rules(loaded, rules)
    except UnsafeSettingsError as exc:
        print(exc.report(), file=sys.stderr)
        if loaded.env == "production":
            print(DEVELOPMENT_HINT, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def exit_with_startup_failure(loaded: LoadedSettings[Any], error: BaseException | str) -> NoReturn:
    """Print one report of a failed start-up (no traceback, no secret) and exit 78."""
    if isinstance(error, ConfigError):
        print(error.report(), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    reason = redact_secrets(loaded.settings, reason)
    print(
        f"service '{loaded.service}' failed to start in {loaded.env}: 1 problem\n"
        f"  - {reason}\n"
        "  Nothing was served. Fix the setting it names (or the service it could not reach) "
        "and start again.",
        file=sys.stderr,
    )
    raise SystemExit(EXIT_CONFIG)


def _exception_line(traceback_text: str) -> str:
    """The ``Type: message`` line of a formatted traceback, without what follows it.

    SQLAlchemy appends the statement (with its parameters) and a link after that line;
    neither belongs in a report.
    """
    lines = traceback_text.strip().splitlines()
    last_frame = max((i for i, line in enumerate(lines) if line.startswith('  File "')), default=-1)
    for line in lines[last_frame + 1 :]:
        if line and not line[0].isspace():
            return line[:400]
    return "the lifespan failed"


class StartupGuard:
    """Pure ASGI: a lifespan start-up failure becomes one line, not a traceback.

    Starlette reports a failing lifespan to the server with the whole traceback as the
    message, which uvicorn prints. The guard keeps the exception's last line for the
    report :func:`serve` prints after the server has stopped, and hands the server an
    empty message. ``on_started`` runs once, when the start-up has completed.
    """

    def __init__(self, app: Any, on_started: Callable[[], None] | None = None) -> None:
        self.app = app
        self.failure: str | None = None
        self._on_started = on_started

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def guarded(message: Any) -> None:
            if message.get("type") == "lifespan.startup.failed":
                self.failure = _exception_line(str(message.get("message") or ""))
                message = {**message, "message": ""}
            elif message.get("type") == "lifespan.startup.complete" and self._on_started:
                started, self._on_started = self._on_started, None  # once per process
                try:
                    started()
                except Exception:  # a console nicety never stops a service from serving
                    logging.getLogger("saasfw.app").warning("start-up banner failed", exc_info=True)
            await send(message)

        await self.app(scope, receive, guarded)
