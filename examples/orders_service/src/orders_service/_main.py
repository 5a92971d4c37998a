"""The ``orders-service`` console script: serve the example with uvicorn."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Serve on ``SAASFW_HTTP__HOST``:``SAASFW_HTTP__PORT`` (default 127.0.0.1:8000)."""
    print("hello from orders", argv if argv is not None else sys.argv[1:])
    return 0
