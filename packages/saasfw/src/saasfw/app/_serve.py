"""Run a saasfw application under uvicorn with the settings' host, port and drain period."""

from __future__ import annotations

import signal
from typing import Any

import uvicorn

from saasfw.app._settings import ServiceSettings

__all__ = ["serve"]


class _Server(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM-requested graceful stop exits with 0.

    uvicorn re-raises the captured signal after shutting down, so the process would end
    "killed by SIGTERM" (143) even though it drained and stopped cleanly.
    """

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            self._captured_signals.remove(sig)


def serve(app: Any, settings: ServiceSettings, **uvicorn_options: Any) -> None:
    """Serve ``app`` on the settings' host and port until SIGTERM or SIGINT.

    On SIGTERM uvicorn stops accepting, lets in-flight requests finish for up to
    ``http.drain_seconds``, runs the lifespan shutdown, and the process exits 0.
    """
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
    _Server(uvicorn.Config(app, **options)).run()
