"""Sessions on memory and a real Redis: new id at login, timeouts, cookies, ending all of a
user's sessions on password change, and cookie authentication through FastAPI."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, Response

from saasfw.security import (
    Authenticator,
    ConfigurationError,
    MemorySessionStore,
    Principal,
    RbacPolicy,
    RedisSessionStore,
    SessionManager,
    install_security,
    public,
    require,
)
from saasfw.security.credentials import SessionStore


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield MemorySessionStore()
        return
    pytest.importorskip("redis")
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(request.getfixturevalue("redis_url"))
    prefix = f"test:{secrets.token_hex(8)}:"
    yield RedisSessionStore(client, prefix=prefix)
    keys = [k async for k in client.scan_iter(match=prefix + "*")]
    ttls = [await client.pttl(k) for k in keys]
    assert all(ttl > 0 for ttl in ttls), "every session key carries a TTL"
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_login_issues_a_new_random_id_and_drops_the_previous(store: SessionStore) -> None:
    manager = SessionManager(store)
    anonymous = await manager.start("guest")
    session = await manager.start("alice", tenant="acme", previous_id=anonymous.id)
    assert session.id != anonymous.id
    assert len(session.id) >= 43  # 256 random bits, url-safe
    assert await manager.load(anonymous.id) is None  # no fixation
    loaded = await manager.load(session.id)
    assert loaded is not None
    assert loaded.user_id == "alice"
    assert loaded.tenant == "acme"
    assert session.id not in repr(loaded)
    ids = {(await manager.start("x")).id for _ in range(50)}
    assert len(ids) == 50


async def test_idle_and_absolute_timeouts(store: SessionStore) -> None:
    idle = SessionManager(store, idle_timeout=0.3, absolute_timeout=10)
    session = await idle.start("bob")
    for _ in range(3):  # activity keeps it alive past the idle timeout
        await asyncio.sleep(0.15)
        assert await idle.load(session.id) is not None
    await asyncio.sleep(0.4)
    assert await idle.load(session.id) is None

    absolute = SessionManager(store, idle_timeout=0.5, absolute_timeout=0.6)
    session = await absolute.start("bob")
    await asyncio.sleep(0.35)
    assert await absolute.load(session.id) is not None
    await asyncio.sleep(0.35)
    assert await absolute.load(session.id) is None  # active, but past the absolute limit


async def test_password_change_ends_every_session_of_the_user(store: SessionStore) -> None:
    manager = SessionManager(store)
    mine = [await manager.start("carol") for _ in range(3)]
    other = await manager.start("dave")
    assert await manager.password_changed("carol") == 3
    for session in mine:
        assert await manager.load(session.id) is None
    assert await manager.load(other.id) is not None
    fresh = await manager.start("carol")
    assert await manager.load(fresh.id) is not None
    await manager.end(fresh.id)
    assert await manager.load(fresh.id) is None


def test_cookie_attributes() -> None:
    manager = SessionManager(MemorySessionStore())
    session = asyncio.run(manager.start("erin"))
    cookie = manager.cookie(session)
    assert cookie.startswith(f"__Host-session={session.id}; Path=/; Max-Age=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Lax"):
        assert attribute in cookie
    assert "Max-Age=0" in manager.clearing_cookie()
    with pytest.raises(ConfigurationError):
        SessionManager(MemorySessionStore(), secure=False)
    with pytest.raises(ConfigurationError):
        SessionManager(MemorySessionStore(), same_site="none")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        SessionManager(MemorySessionStore(), idle_timeout=100, absolute_timeout=10)


def test_memory_store_is_bounded_and_counts_evictions() -> None:
    store = MemorySessionStore(max_sessions=10)
    manager = SessionManager(store)
    for _ in range(15):
        asyncio.run(manager.start("f"))
    assert len(store._sessions) == 10
    assert store.evicted == 5


async def test_cookie_sessions_through_fastapi_with_csrf_defence() -> None:
    manager = SessionManager(MemorySessionStore(), cookie_name="sid", secure=False)
    policy = RbacPolicy.from_mapping({"roles": {"clerk": {"permissions": ["orders:write"]}}})
    app = FastAPI()
    install_security(app, Authenticator(sessions=manager, policy=policy))

    @app.post("/login", dependencies=[Depends(public)])
    async def login(response: Response) -> dict[str, bool]:
        session = await manager.start("gina", roles=("clerk",))
        response.headers["set-cookie"] = manager.cookie(session)
        return {"ok": True}

    @app.post("/orders")
    async def create(p: Annotated[Principal, Depends(require("orders:write"))]) -> dict[str, str]:
        return {"by": p.id, "via": p.auth_method}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        await client.post("/login")
        same = await client.post("/orders", headers={"Sec-Fetch-Site": "same-origin"})
        assert same.json() == {"by": "gina", "via": "session"}
        assert (await client.post("/orders", headers={"Origin": "http://shop.test"})).is_success
        cross = await client.post("/orders", headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 401
        assert cross.json()["code"] == "session.cross_site"
        evil = await client.post("/orders", headers={"Origin": "https://evil.test"})
        assert evil.status_code == 401
        await manager.password_changed("gina")
        ended = await client.post("/orders", headers={"Sec-Fetch-Site": "same-origin"})
        assert ended.status_code == 401
        assert ended.json()["code"] == "session.ended"
