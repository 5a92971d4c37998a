"""The ``orders-service`` console script: serve the example with uvicorn."""

from __future__ import annotations

import os
import sys

from orders_service._app import build_app, load
from saasfw.app import serve
from saasfw.config import ConfigError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Serve on ``SAASFW_HTTP__HOST``:``SAASFW_HTTP__PORT`` (default 127.0.0.1:8000).

    ``PORT`` is honoured too (platforms that assign a port set it), below
    ``SAASFW_HTTP__PORT``. Invalid settings print one report and exit 78.
    """
    del argv  # no options: everything is configured through settings
    if "PORT" in os.environ and "SAASFW_HTTP__PORT" not in os.environ:
        os.environ["SAASFW_HTTP__PORT"] = os.environ["PORT"]
    try:
        loaded = load()
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 78
    serve(build_app, loaded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
