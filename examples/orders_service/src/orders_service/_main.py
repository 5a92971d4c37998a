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

    ``orders-service erase <tenant> <e-mail>`` erases a customer's personal data instead.

    ``PORT`` and ``HOST`` are honoured too (platforms and the saasfw image set them), below
    ``SAASFW_HTTP__PORT`` and ``SAASFW_HTTP__HOST``. Invalid settings print one report and
    exit 78; unsafe production settings too, before any port is bound.
    """
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["erase"]:  # orders-service erase <tenant> <e-mail>: see _erase_cli
        from orders_service._erase_cli import erase_main

        return erase_main(args[1:])
    for plain, ours in (("PORT", "SAASFW_HTTP__PORT"), ("HOST", "SAASFW_HTTP__HOST")):
        if plain in os.environ and ours not in os.environ:
            os.environ[ours] = os.environ[plain]
    try:
        loaded = load()
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return 78
    serve(build_app, loaded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
