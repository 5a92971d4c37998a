"""Acceptance 4: API keys are stored only as keyed hashes; bad checksums never reach the store.

Runs against the memory store, SQLite (aiosqlite) and a real PostgreSQL in its own schema.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from saasfw.security import (
    ApiKeyService,
    AuthenticationError,
    Authenticator,
    ConfigurationError,
    MemoryApiKeyStore,
    Principal,
    RbacPolicy,
    SecurityEvents,
    SqlApiKeyStore,
    install_security,
    require,
)
from saasfw.security.advanced import SecurityEvent
from saasfw.security.credentials import ApiKeyRecord, ApiKeyStore, parse_api_key

PEPPER = SecretStr("p" * 16 + secrets.token_hex(16))


class CountingStore:
    """Wraps a real store and counts every call, to prove what never reaches it."""

    def __init__(self, inner: ApiKeyStore) -> None:
        self.inner = inner
        self.calls = 0

    async def add(self, record: ApiKeyRecord) -> None:
        self.calls += 1
        await self.inner.add(record)

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        self.calls += 1
        return await self.inner.get(key_id)

    async def revoke(self, key_id: str, revoked_at: float) -> bool:
        self.calls += 1
        return await self.inner.revoke(key_id, revoked_at)

    async def list_for_principal(self, principal_id: str) -> list[ApiKeyRecord]:
        self.calls += 1
        return await self.inner.list_for_principal(principal_id)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ApiKeyStore, object]]:
    if request.param == "memory":
        memory = MemoryApiKeyStore()
        yield memory, memory
        return
    pytest.importorskip("sqlalchemy")
    from sqlalchemy.ext.asyncio import create_async_engine

    if request.param == "sqlite":
        pytest.importorskip("aiosqlite")
        path = tmp_path_factory.mktemp("keys") / "keys.db"
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        sql = SqlApiKeyStore(engine)
        await sql.create_table()
        yield sql, engine
        await engine.dispose()
        return
    pytest.importorskip("asyncpg")
    url = request.getfixturevalue("postgres_url").replace("postgresql://", "postgresql+asyncpg://")
    schema = f"sec_keys_{secrets.token_hex(6)}"
    engine = create_async_engine(url)
    from sqlalchemy import text

    async with engine.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sql = SqlApiKeyStore(engine, schema=schema)
    await sql.create_table()
    try:
        yield sql, engine
    finally:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await engine.dispose()


async def _all_stored_bytes(store: ApiKeyStore, backend: object) -> bytes:
    """Everything the store holds, as raw bytes, to search for plaintext."""
    if isinstance(backend, MemoryApiKeyStore):
        return repr([vars_of(r) for r in backend._records.values()]).encode()
    assert isinstance(store, SqlApiKeyStore)
    async with backend.connect() as conn:  # type: ignore[attr-defined]
        rows = (await conn.execute(store.table.select())).all()
    return repr([tuple(row) for row in rows]).encode()


def vars_of(record: ApiKeyRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in ApiKeyRecord.__slots__}


async def test_the_store_holds_no_plaintext_and_keys_verify(
    store: tuple[ApiKeyStore, object],
) -> None:
    backend_store, backend = store
    service = ApiKeyService(
        backend_store, peppers={"p1": PEPPER}, current_pepper="p1", prefix="sfw_live"
    )
    created = await service.create(
        "ci deploy", principal_id="svc-ci", tenant="acme", scopes=["orders:read"]
    )
    key = created.key
    assert key.startswith("sfw_live_")
    assert key not in repr(created)
    key_id = parse_api_key(key, "sfw_live")
    secret_part = key.split("_")[3]

    dump = await _all_stored_bytes(backend_store, backend)
    assert key_id.encode() in dump  # sanity: the dump really contains the records
    assert secret_part.encode() not in dump
    assert key.encode() not in dump
    record = await backend_store.get(key_id)
    assert record is not None
    assert len(record.key_hash) == 32
    assert secret_part.encode() not in record.key_hash

    principal = await service.verify(key)
    assert principal.id == "svc-ci"
    assert principal.kind == "api_key"
    assert principal.tenant == "acme"
    assert principal.permissions == frozenset({"orders:read"})
    assert [r.key_id for r in await backend_store.list_for_principal("svc-ci")] == [key_id]


async def test_a_bad_checksum_is_rejected_without_touching_the_store(
    store: tuple[ApiKeyStore, object],
) -> None:
    counting = CountingStore(store[0])
    service = ApiKeyService(counting, peppers={"p1": PEPPER}, current_pepper="p1")
    key = (await service.create("k", principal_id="svc")).key
    counting.calls = 0
    body, checksum = key.rsplit("_", 1)
    bad_checksum = "0" * 8 if checksum != "0" * 8 else "1" * 8
    altered_secret = body[:-1] + ("a" if body[-1] != "a" else "b") + "_" + checksum
    for bad in (
        f"{body}_{bad_checksum}",
        altered_secret,  # one character changed: the checksum no longer matches
        key[:-1],
        key + "0",
        "sfw_",
        "",
        "sfw_" + "a" * 5000,
        key.replace("sfw_", "xyz_"),
    ):
        with pytest.raises(AuthenticationError) as info:
            await service.verify(bad)
        assert info.value.code == "api_key.malformed"
    assert counting.calls == 0
    await service.verify(key)
    assert counting.calls == 1


async def test_wrong_secret_with_valid_checksum_revocation_and_expiry(
    store: tuple[ApiKeyStore, object],
) -> None:
    import zlib

    events: list[SecurityEvent] = []
    bus = SecurityEvents()
    bus.subscribe(events.append)
    service = ApiKeyService(store[0], peppers={"p1": PEPPER}, current_pepper="p1", events=bus)
    created = await service.create("k", principal_id="svc")
    prefix, key_id, _secret, _ = created.key.split("_")
    forged_body = f"{prefix}_{key_id}_{'a' * 52}"
    forged = f"{forged_body}_{zlib.crc32(forged_body.encode()) & 0xFFFFFFFF:08x}"
    with pytest.raises(AuthenticationError) as info:
        await service.verify(forged)  # well-formed, right id, wrong secret
    assert info.value.code == "api_key.invalid"

    assert await service.revoke(key_id, by="admin")
    with pytest.raises(AuthenticationError) as info:
        await service.verify(created.key)
    assert info.value.code == "api_key.revoked"
    assert [e.type for e in events] == ["auth.api_key.created", "auth.api_key.revoked"]
    assert created.key not in repr(events)

    expired = await service.create("old", principal_id="svc", expires_in=-1)
    with pytest.raises(AuthenticationError) as info:
        await service.verify(expired.key)
    assert info.value.code == "api_key.expired"
    assert not await service.revoke("aaaaaaaaaaaaaaaa")


async def test_pepper_rotation_keeps_old_keys_valid() -> None:
    store = MemoryApiKeyStore()
    old = ApiKeyService(store, peppers={"p1": PEPPER}, current_pepper="p1")
    key = (await old.create("k", principal_id="svc")).key
    rotated = ApiKeyService(
        store,
        peppers={"p1": PEPPER, "p2": SecretStr("q" * 40)},
        current_pepper="p2",
    )
    assert (await rotated.verify(key)).id == "svc"
    new_key = (await rotated.create("k2", principal_id="svc")).key
    assert (await rotated.verify(new_key)).id == "svc"
    retired = ApiKeyService(store, peppers={"p2": SecretStr("q" * 40)}, current_pepper="p2")
    with pytest.raises(AuthenticationError):
        await retired.verify(key)
    assert "q" * 40 not in repr(rotated)


def test_configuration_fails_closed() -> None:
    store = MemoryApiKeyStore()
    with pytest.raises(ConfigurationError):
        ApiKeyService(store, peppers={"p": "short"}, current_pepper="p")
    with pytest.raises(ConfigurationError):
        ApiKeyService(store, peppers={"p": PEPPER}, current_pepper="other")
    with pytest.raises(ConfigurationError):
        ApiKeyService(store, peppers={"p": PEPPER}, current_pepper="p", prefix="Bad-Prefix")


async def test_api_keys_over_http_header_only_never_query() -> None:
    service = ApiKeyService(MemoryApiKeyStore(), peppers={"p1": PEPPER}, current_pepper="p1")
    policy = RbacPolicy.from_mapping({"roles": {}})
    app = FastAPI()
    install_security(app, Authenticator(api_keys=service, policy=policy))

    @app.get("/orders")
    async def orders(p: Annotated[Principal, Depends(require("orders:read"))]) -> dict[str, str]:
        return {"id": p.id}

    reader = (await service.create("r", principal_id="svc", scopes=["orders:read"])).key
    other = (await service.create("o", principal_id="svc", scopes=["billing:read"])).key
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ok = await client.get("/orders", headers={"X-API-Key": reader})
        assert ok.status_code == 200
        assert ok.json() == {"id": "svc"}
        assert (await client.get("/orders", headers={"X-API-Key": other})).status_code == 403
        in_query = await client.get("/orders", params={"key": reader})
        assert in_query.status_code == 401
        assert in_query.json()["code"] == "auth.credentials_in_query"
        odd_name = await client.get("/orders", params={"q": reader}, headers={"X-API-Key": reader})
        assert odd_name.status_code == 401
        both = await client.get(
            "/orders", headers={"X-API-Key": reader, "Authorization": "Bearer x.y.z"}
        )
        assert both.status_code == 401
    assert reader not in in_query.text


_KEY_FOR_PROPERTIES = "sfw_" + "a" * 16 + "_" + "b" * 52


@given(st.integers(min_value=0), st.sampled_from("abcdefghijklmnopqrstuvwxyz234567_-0189"))
def test_any_single_character_change_fails_the_offline_checksum(position: int, char: str) -> None:
    import zlib

    body = _KEY_FOR_PROPERTIES
    key = f"{body}_{zlib.crc32(body.encode()) & 0xFFFFFFFF:08x}"
    assert parse_api_key(key, "sfw") == "a" * 16
    index = position % len(key)
    if key[index] == char:
        return
    mutated = key[:index] + char + key[index + 1 :]
    with pytest.raises(AuthenticationError):
        parse_api_key(mutated, "sfw")


@given(st.text(max_size=200))
def test_random_strings_never_parse_as_keys(text: str) -> None:
    with pytest.raises(AuthenticationError):
        parse_api_key(text, "sfw")
