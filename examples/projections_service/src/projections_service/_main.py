"""The ``projections-service`` console script: serve the example with uvicorn."""

from __future__ import annotations

import os
import sys

from projections_service._app import build_app, load
from saasfw.app import serve
from saasfw.config import ConfigError

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Serve on ``SAASFW_HTTP__HOST``:``SAASFW_HTTP__PORT`` (``PORT``/``HOST`` honoured too).

    Invalid settings print one report and exit 78; unsafe production settings too, before
    any port is bound. ``argv`` is accepted for symmetry with the orders service (unused).
    """
    del argv
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
