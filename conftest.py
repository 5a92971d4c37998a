"""Repository-wide pytest plugin: access to the real PostgreSQL and Redis used by tests.

Tests that need a service take the ``postgres_url`` or ``redis_url`` fixture (and carry the
``postgres``/``redis`` marker). Without ``SAASFW_TEST_POSTGRES_URL`` / ``SAASFW_TEST_REDIS_URL``
they skip with a reason; with ``SAASFW_REQUIRE_SERVICES=1`` a missing or unreachable service
is an error instead, so CI can never pass by skipping. This file imports no saasfw package:
each package's tests also run from here against that package's wheel alone.
"""

from __future__ import annotations

import os
import socket
from urllib.parse import urlsplit

import pytest


def _services_required() -> bool:
    return os.environ.get("SAASFW_REQUIRE_SERVICES", "").strip() in {"1", "true", "yes"}


def _reachable(url: str, default_port: int) -> str | None:
    """Return None when a TCP connection to the URL's host and port succeeds, else why not."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return None
    except OSError as exc:
        return f"{host}:{port} is unreachable ({exc.strerror or exc})"


def _service_url(env_var: str, default_port: int) -> str:
    url = os.environ.get(env_var, "").strip()
    if not url:
        reason = f"{env_var} is not set"
    else:
        problem = _reachable(url, default_port)
        if problem is None:
            return url
        reason = f"{env_var}: {problem}"
    if _services_required():
        pytest.fail(f"SAASFW_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A reachable PostgreSQL URL (``postgresql://user@host:port/db``), or skip/fail."""
    return _service_url("SAASFW_TEST_POSTGRES_URL", 5432)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A reachable Redis URL (``redis://host:port/db``), or skip/fail."""
    return _service_url("SAASFW_TEST_REDIS_URL", 6379)
