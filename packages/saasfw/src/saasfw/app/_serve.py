"""Run a saasfw application under uvicorn, after the production rules have passed."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import uvicorn

from saasfw.app._rules import production_rules
from saasfw.app._settings import ServiceSettings
from saasfw.config import LoadedSettings, ProductionRules, exit_if_unsafe

__all__ = ["serve"]


class _Server(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM-requested graceful stop exits with 0.

    uvicorn re-raises the captured signal after shutting down, so the process would end
    "killed by SIGTERM" (143) even though it drained and stopped cleanly.
    """

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM and sig in self._captured_signals:
            self._captured_signals.remove(sig)


def serve(
    app: Callable[[ServiceSettings], Any],
    loaded: LoadedSettings[Any],
    *,
    rules: ProductionRules | None = None,
    **uvicorn_options: Any,
) -> None:
    """Check ``loaded`` against the production rules, build the app, serve until SIGTERM.

    A fatal rule violation prints one report of every violation and exits with status 78
    before any port is bound. On SIGTERM uvicorn stops accepting, lets in-flight requests
    finish for up to ``http.drain_seconds``, runs the lifespan shutdown, and the process
    exits 0.

    Args:
        app: the application factory, called with the loaded settings.
        loaded: the result of :func:`saasfw.app.load_settings`.
        rules: the rules to enforce (default: :func:`saasfw.app.production_rules`).
        uvicorn_options: passed to ``uvicorn.Config``, overriding the settings.
    """
    exit_if_unsafe(loaded, rules if rules is not None else production_rules())
    settings: ServiceSettings = loaded.settings
    http = settings.http
    options: dict[str, Any] = {
        "host": http.host,
        "port": http.port,
        "access_log": http.access_log,
        "root_path": http.root_path,
        "timeout_graceful_shutdown": max(1, round(http.drain_seconds)),
        "proxy_headers": False,  # forwarded headers are resolved by saasfw.security only
        "server_header": False,
        "log_config": None,  # logging is configured by saasfw.observability
        "lifespan": "on",
    }
    options.update(uvicorn_options)
    _Server(uvicorn.Config(app(settings), **options)).run()
