"""Search, analytics and the auditors' router over the SQL sink (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from saasfw.audit import (
    Actor,
    AuditLogger,
    Auditor,
    AuditQuery,
    AuditSearch,
    FieldCipher,
    FileSink,
    Keyring,
    Resource,
    SqlSink,
    SubjectKeyStore,
    create_audit_router,
)
from saasfw.audit._sql import async_url


@dataclass
class World:
    logger: AuditLogger
    search: AuditSearch
    log: Path
    engine: AsyncEngine


async def _world(tmp_path: Path, url: str, schema: str | None) -> AsyncIterator[World]:
    ring = Keyring({"k1": b"\x05" * 32}, "k1")
    cipher = FieldCipher(ring, SubjectKeyStore(tmp_path / "subjects.json", ring))
    log = tmp_path / "audit.jsonl"
    logger = AuditLogger(
        [FileSink(log), SqlSink(url, schema=schema)],
        producer_id="s",
        cipher=cipher,
        encrypted_fields=["email"],
        batch_interval=0.005,
    )
    async with logger:
        for i in range(120):
            logger.record(
                "user.updated" if i % 3 else "user.deleted",
                outcome="failure" if i % 10 == 0 else "success",
                actor=Actor(f"u{i % 4}", tenant="t1"),
                resource=Resource("user", str(i)),
                correlation_id=f"c{i % 7}",
                details={"email": f"p{i}@example.com", "i": i},
                subject="alice" if i < 10 else "bob",
            )
        for i in range(30):
            logger.record("user.updated", actor=Actor("x", tenant="t2"), details={"i": i})
        assert logger.flush()
        engine = create_async_engine(async_url(url))
        try:
            yield World(logger, AuditSearch(engine, schema=schema, cipher=cipher), log, engine)
        finally:
            await engine.dispose()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for w in _world(tmp_path, f"sqlite:///{tmp_path / 'a.db'}", None):
        yield w


async def test_keyset_pagination_covers_everything_once_newest_first(world: World) -> None:
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = await world.search.search(tenant="t1", cursor=cursor, limit=50)
        seen.extend(r["details"]["i"] for r in page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(range(119, -1, -1))


async def test_page_size_is_clamped_and_tenant_confined(world: World) -> None:
    page = await world.search.search(tenant="t1", limit=10_000)
    assert page.limit == 200
    assert len(page.items) == 120
    assert {r["actor"]["tenant"] for r in page.items} == {"t1"}
    other = await world.search.search(tenant="t2", limit=1000)
    assert len(other.items) == 30
    assert (await world.search.search(tenant="nobody")).items == []


async def test_filters_combine(world: World) -> None:
    s = world.search
    page = await s.search(tenant="t1", query=AuditQuery(type="user.deleted"), limit=200)
    assert {r["details"]["i"] for r in page.items} == set(range(0, 120, 3))
    page = await s.search(
        tenant="t1", query=AuditQuery(type="user.updated", outcome="failure"), limit=200
    )
    assert {r["details"]["i"] for r in page.items} == {i for i in range(0, 120, 10) if i % 3}
    page = await s.search(tenant="t1", query=AuditQuery(actor_id="u1", correlation_id="c1"))
    assert {r["details"]["i"] for r in page.items} == {
        i for i in range(120) if i % 4 == 1 and i % 7 == 1
    }
    page = await s.search(
        tenant="t1", query=AuditQuery(resource_type="user", resource_id="42"), limit=5
    )
    assert [r["details"]["i"] for r in page.items] == [42]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert (await s.search(tenant="t1", query=AuditQuery(since=future))).items == []
    assert (
        len((await s.search(tenant="t1", query=AuditQuery(until=future), limit=200)).items) == 120
    )


async def test_decryption_only_on_request_and_shredded_fields_say_so(world: World) -> None:
    plain = await world.search.search(tenant="t1", limit=200)
    assert all(r["details"]["email"].startswith("enc:1:") for r in plain.items)
    world.logger.erase_subject("alice")
    clear = await world.search.search(tenant="t1", limit=200, decrypt=True)
    by_i = {r["details"]["i"]: r["details"]["email"] for r in clear.items}
    assert by_i[50] == "p50@example.com"
    assert by_i[3] == "[erased]"


async def test_counts_per_bucket_type_and_outcome(world: World) -> None:
    now = datetime.now(UTC)
    rows = await world.search.counts(
        tenant="t1", since=now - timedelta(days=1), until=now + timedelta(days=1), bucket="hour"
    )
    total = {(r["type"], r["outcome"]): 0 for r in rows}
    for r in rows:
        total[(r["type"], r["outcome"])] += r["count"]
    assert total == {
        ("user.deleted", "failure"): 4,
        ("user.deleted", "success"): 36,
        ("user.updated", "failure"): 8,
        ("user.updated", "success"): 72,
    }
    assert all(r["bucket"].endswith(":00:00+00:00") for r in rows)


_AUDITORS = {
    "token-auditor": Auditor("aud1", tenant="t1"),
    "token-dpo": Auditor("dpo1", tenant="t1", can_decrypt=True),
}


async def _auditor(authorization: Annotated[str | None, Header()] = None) -> Auditor:
    who = _AUDITORS.get((authorization or "").removeprefix("Bearer "))
    if who is None:
        raise HTTPException(401, "not authenticated")
    return who


def _records(world: World) -> list[dict[str, Any]]:
    assert world.logger.flush()
    return [json.loads(x) for x in world.log.read_text().splitlines()]


async def test_router_queries_are_permission_checked_and_audited(world: World) -> None:
    app = FastAPI()
    app.include_router(create_audit_router(world.search, world.logger, auditor=_auditor))
    transport = httpx.ASGITransport(app=app)
    auditor = {"Authorization": "Bearer token-auditor"}
    dpo = {"Authorization": "Bearer token-dpo"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/audit/events")).status_code == 401
        r = await client.get(
            "/audit/events", params={"type": "user.deleted", "limit": 5}, headers=auditor
        )
        assert r.status_code == 200
        body = r.json()
        assert len(body["items"]) == 5
        assert body["next_cursor"]
        r2 = await client.get(
            "/audit/events", params={"cursor": body["next_cursor"]}, headers=auditor
        )
        assert r2.status_code == 200
        assert (
            await client.get("/audit/events", params={"cursor": "!!"}, headers=auditor)
        ).status_code == 400
        denied = await client.get("/audit/events", params={"decrypt": "true"}, headers=auditor)
        assert denied.status_code == 403
        ok = await client.get(
            "/audit/events",
            params={"decrypt": "true", "limit": 1, "resource_id": "100"},
            headers=dpo,
        )
        assert ok.json()["items"][0]["details"]["email"] == "p100@example.com"
        now = datetime.now(UTC)
        stats = await client.get(
            "/audit/stats",
            params={
                "since": (now - timedelta(days=1)).isoformat(),
                "until": (now + timedelta(days=1)).isoformat(),
            },
            headers=auditor,
        )
        assert stats.status_code == 200
        assert sum(b["count"] for b in stats.json()["buckets"]) >= 120
    meta = [r for r in _records(world) if r["type"].startswith("audit.")]
    kinds = [(r["type"], r["actor"]["id"], r["outcome"]) for r in meta]
    assert ("audit.events.searched", "aud1", "success") in kinds
    assert ("audit.decrypt.denied", "aud1", "denied") in kinds
    assert ("audit.events.searched", "dpo1", "success") in kinds
    assert ("audit.stats.read", "aud1", "success") in kinds
    searched = [r for r in meta if r["type"] == "audit.events.searched"]
    assert searched[0]["details"]["type"] == "user.deleted"
    assert searched[0]["details"]["returned"] == 5


@pytest.mark.postgres
async def test_search_and_counts_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    schema = f"audit_search_{secrets.token_hex(6)}"
    admin = create_async_engine(async_url(postgres_url))
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        async for w in _world(tmp_path, postgres_url, schema):
            seen: list[int] = []
            cursor = None
            while True:
                page = await w.search.search(tenant="t1", cursor=cursor, limit=37)
                seen.extend(r["details"]["i"] for r in page.items)
                if (cursor := page.next_cursor) is None:
                    break
            assert seen == list(range(119, -1, -1))
            now = datetime.now(UTC)
            rows = await w.search.counts(
                tenant="t1", since=now - timedelta(days=1), until=now + timedelta(days=1)
            )
            assert sum(r["count"] for r in rows) == 120
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def test_export_returns_every_match_decrypted(world: World) -> None:
    rows = [r async for r in world.search.export(tenant="t1", query=AuditQuery(actor_id="u2"))]
    assert [r["details"]["i"] for r in rows] == [i for i in range(119, -1, -1) if i % 4 == 2]
    assert all(r["details"]["email"] == f"p{r['details']['i']}@example.com" for r in rows)
