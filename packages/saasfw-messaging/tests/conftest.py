"""Fixtures for the messaging tests: databases, and the real RabbitMQ and NATS JetStream.

``rabbitmq_url`` / ``nats_url`` read ``SAASFW_TEST_RABBITMQ_URL`` / ``SAASFW_TEST_NATS_URL``
in the style of the root conftest: skip when unset, fail under ``SAASFW_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rabbitmq: needs a real RabbitMQ (SAASFW_TEST_RABBITMQ_URL)")
    config.addinivalue_line("markers", "nats: needs a real NATS JetStream (SAASFW_TEST_NATS_URL)")


def _required() -> bool:
    return os.environ.get("SAASFW_REQUIRE_SERVICES", "").strip() in {"1", "true", "yes"}


def _service_url(env_var: str, default_port: int) -> str:
    url = os.environ.get(env_var, "").strip()
    if not url:
        reason = f"{env_var} is not set"
    else:
        parts = urlsplit(url)
        try:
            with socket.create_connection(
                (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2.0
            ):
                return url
        except OSError as exc:
            reason = f"{env_var}: {parts.hostname}:{parts.port} is unreachable ({exc})"
    if _required():
        pytest.fail(f"SAASFW_REQUIRE_SERVICES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """A reachable RabbitMQ URL (``amqp://user:pass@host:port/``), or skip/fail."""
    return _service_url("SAASFW_TEST_RABBITMQ_URL", 5672)


@pytest.fixture(scope="session")
def nats_url() -> str:
    """A reachable NATS URL with JetStream (``nats://host:port``), or skip/fail."""
    return _service_url("SAASFW_TEST_NATS_URL", 4222)


async def _postgres_engine(url: str) -> AsyncIterator[AsyncEngine]:
    schema = f"messaging_{uuid.uuid4().hex[:10]}"
    async_url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
    admin = create_async_engine(async_url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    made = create_async_engine(
        async_url, connect_args={"server_settings": {"search_path": schema}}, pool_size=10
    )
    try:
        yield made
    finally:
        await made.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh SQLite file, and on a fresh schema of the real PostgreSQL."""
    if request.param == "sqlite":
        made = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'messaging.db'}")
        yield made
        await made.dispose()
        return
    async for made in _postgres_engine(request.getfixturevalue("postgres_url")):
        yield made


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh schema of the real PostgreSQL (the broker tests share it)."""
    async for made in _postgres_engine(postgres_url):
        yield made
