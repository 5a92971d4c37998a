"""Run a saasfw application under uvicorn, after the production rules have passed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from saasfw.app._rules import production_rules
from saasfw.app._settings import ServiceSettings
from saasfw.config import LoadedSettings, ProductionRules, exit_if_unsafe

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

    exit_if_unsafe(loaded, rules if rules is not None else production_rules())
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
    k8s_serve(app(settings), host=http.host, port=http.port, **options)
