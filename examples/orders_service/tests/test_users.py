"""The users table: idempotent seeding (replicas racing, restarts) and the directory port.

On SQLite and a real PostgreSQL (a schema of this test alone), with the table created by
the example's own migration revision.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from orders_service._settings import DemoUser
from orders_service._users import UserDirectory, users_table

from saasfw.security import SubjectState

HASH = (
    "$argon2id$v=19$m=19456,t=2,p=1$gCfnZKa/Ytg0Y/DQ1f5tuQ"
    "$bYNyJhcQtIP6aJbhEVi0CicAqhQvEvbBm8eUnmqboG0"
)
DEMO = {
    "alice": DemoUser(password_hash=HASH, tenant="acme", roles=["clerk"]),
    "carol": DemoUser(password_hash=HASH, tenant="acme", roles=["admin", "clerk"]),
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    if request.param == "sqlite":
        made = create_async_engine(
            f"sqlite+aiosqlite:///{tmp_path / 'users.db'}", connect_args={"timeout": 60}
        )
        async with made.begin() as conn:
            await conn.run_sync(users_table.metadata.create_all)
        yield made
        await made.dispose()
        return
    url = request.getfixturevalue("postgres_url").replace("postgresql://", "postgresql+asyncpg://")
    schema = f"orders_users_{secrets.token_hex(6)}"
    admin = create_async_engine(url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    made = create_async_engine(url, connect_args={"server_settings": {"search_path": schema}})
    async with made.begin() as conn:
        await conn.run_sync(users_table.metadata.create_all)
    try:
        yield made
    finally:
        await made.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def test_seeding_is_idempotent_and_keeps_changed_rows(engine: Any) -> None:
    users = UserDirectory(engine)
    # Replicas starting together seed at once: every row lands exactly once.
    added = await asyncio.gather(*(UserDirectory(engine).seed(DEMO) for _ in range(4)))
    assert sum(added) == 2
    assert await users.current("carol") == SubjectState(True, frozenset({"admin", "clerk"}), "acme")

    assert await users.set_active("alice", False)
    assert await users.set_roles("carol", ["viewer"])
    assert await users.seed(DEMO) == 0  # a restart: the admin's changes are kept
    assert await users.current("alice") == SubjectState(False, frozenset({"clerk"}), "acme")
    assert await users.current("carol") == SubjectState(True, frozenset({"viewer"}), "acme")

    assert await users.delete("alice")
    assert await users.current("alice") is None
    assert not await users.set_active("alice", True)
    assert await users.seed({}) == 0
    user = await users.get("carol")
    assert user is not None
    assert HASH not in repr(user)
