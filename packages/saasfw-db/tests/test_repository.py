"""Repository behaviour on SQLite and PostgreSQL (acceptance 1, 4)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import MetaData, String, UniqueConstraint, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from saasfw.db import (
    AuditMixin,
    BigIntPrimaryKey,
    ConflictError,
    Database,
    DuplicateKeyError,
    InvalidQueryError,
    NotFoundError,
    Repository,
    SoftDeleteMixin,
    SortKey,
    StaleVersionError,
    TenantMixin,
    TenantScopeError,
    UUIDPrimaryKey,
    VersionMixin,
)


class Model(DeclarativeBase):
    metadata = MetaData()


class Item(UUIDPrimaryKey, AuditMixin, SoftDeleteMixin, VersionMixin, Model):
    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("sku"),)

    sku: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(100))
    rank: Mapped[int] = mapped_column(default=0)
    note: Mapped[str | None] = mapped_column(String(100), default=None)


class Doc(BigIntPrimaryKey, TenantMixin, AuditMixin, Model):
    __tablename__ = "docs"
    __table_args__ = (UniqueConstraint("tenant_id", "slug"),)

    slug: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(100))


class ItemRepository(Repository[Item]):
    model = Item
    filterable = frozenset({"name", "rank", "note"})
    sortable = frozenset({"name", "rank", "created_at"})
    default_sort = (SortKey("created_at"),)


class DocRepository(Repository[Doc]):
    model = Doc
    filterable = frozenset({"slug"})
    sortable = frozenset({"slug"})


DatabaseFactory = Callable[..., Awaitable[Database]]

ACTOR: dict[str, str | None] = {"id": "user-1"}
TENANT: dict[str, str | None] = {"id": "acme"}


@pytest.fixture
async def db(database_factory: DatabaseFactory) -> Database:
    ACTOR["id"], TENANT["id"] = "user-1", "acme"
    return await database_factory(
        Model.metadata,
        actor_provider=lambda: ACTOR["id"],
        tenant_provider=lambda: TENANT["id"],
    )


async def seed(db: Database, count: int) -> list[uuid.UUID]:
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        items = [
            await repo.add(Item(sku=f"sku-{i}", name=f"item-{i % 7}", rank=i % 5))
            for i in range(count)
        ]
    return [item.id for item in items]


async def test_add_get_stamps_actor_time_and_version(db: Database) -> None:
    async with db.unit_of_work() as uow:
        item = await ItemRepository(uow.session).add(Item(sku="a", name="apple"))
    async with db.unit_of_work() as uow:
        loaded = await ItemRepository(uow.session).get(item.id)
    assert loaded.name == "apple"
    assert loaded.created_by == "user-1"
    assert loaded.updated_by == "user-1"
    assert loaded.version == 1
    assert loaded.created_at.tzinfo is not None
    assert abs((datetime.now(UTC) - loaded.created_at).total_seconds()) < 60
    assert item.id.version == 7


async def test_get_missing_raises_not_found_and_get_or_none_returns_none(db: Database) -> None:
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        missing = uuid.uuid4()
        with pytest.raises(NotFoundError) as info:
            await repo.get(missing)
        assert info.value.status == 404
        assert info.value.key == missing
        assert await repo.get_or_none(missing) is None


async def test_list_filters_sort_count_exists(db: Database) -> None:
    await seed(db, 20)
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        rows = await repo.list(filters={"rank": 3}, sort="-name", limit=50)
        assert {row.rank for row in rows} == {3}
        assert len(rows) == 4
        assert [row.name for row in rows] == sorted((row.name for row in rows), reverse=True)
        assert await repo.count() == 20
        assert await repo.count(filters={"rank": [1, 2]}) == 8
        assert await repo.exists(filters={"name": "item-3"})
        assert not await repo.exists(filters={"name": "nope"})
        assert await repo.count(filters={"note": None}) == 20
        assert await repo.count(filters={"rank": []}) == 0
        with pytest.raises(InvalidQueryError):
            await repo.list(filters={"sku": "sku-1"})  # not allow-listed


async def test_add_many_bulk_inserts_with_stamps(db: Database) -> None:
    async with db.unit_of_work() as uow:
        count = await ItemRepository(uow.session).add_many(
            {"sku": f"bulk-{i}", "name": "bulk"} for i in range(2500)
        )
    assert count == 2500
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        assert await repo.count(filters={"name": "bulk"}) == 2500
        sample = (await repo.list(filters={"name": "bulk"}, limit=1))[0]
        assert sample.created_by == "user-1"
        assert sample.version == 1
        assert sample.id.version == 7
        assert await ItemRepository(uow.session).add_many([]) == 0


async def test_duplicate_key_is_typed(db: Database) -> None:
    await seed(db, 1)
    with pytest.raises(DuplicateKeyError) as info:
        async with db.unit_of_work() as uow:
            await ItemRepository(uow.session).add(Item(sku="sku-0", name="dup"))
    assert info.value.status == 409
    assert "sku-0" not in str(info.value)  # no driver text with values


async def test_partial_update_bumps_version_and_checks_expected(db: Database) -> None:
    (key,) = await seed(db, 1)
    ACTOR["id"] = "user-2"
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        updated = await repo.update(key, {"name": "renamed"}, expected_version=1)
        assert updated.name == "renamed"
        assert updated.version == 2
        assert updated.updated_by == "user-2"
        assert updated.created_by == "user-1"
        with pytest.raises(StaleVersionError):
            await repo.update(key, {"name": "again"}, expected_version=1)
        with pytest.raises(NotFoundError):
            await repo.update(uuid.uuid4(), {"name": "x"})
        with pytest.raises(ValueError, match="protected"):
            await repo.update(key, {"version": 9})
        with pytest.raises(ValueError, match="unknown"):
            await repo.update(key, {"nope": 1})
    async with db.unit_of_work() as uow:
        assert (await ItemRepository(uow.session).get(key)).name == "renamed"


async def test_soft_delete_hides_row_until_asked_and_restore(db: Database) -> None:
    first, second = await seed(db, 2)
    async with db.unit_of_work() as uow:
        await ItemRepository(uow.session).delete(first)
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        with pytest.raises(NotFoundError):
            await repo.get(first)
        assert (await repo.get(first, include_deleted=True)).deleted_at is not None
        assert await repo.count() == 1
        assert await repo.count(include_deleted=True) == 2
        assert [row.id for row in await repo.list()] == [second]
        # Raw ORM queries through a saasfw session are filtered too.
        raw = (await uow.session.scalars(select(Item))).all()
        assert [row.id for row in raw] == [second]
        with pytest.raises(NotFoundError):
            await repo.delete(first)  # already deleted
        restored = await repo.restore(first)
        assert restored.deleted_at is None
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        await repo.delete(second, hard=True)
        assert await repo.get_or_none(second, include_deleted=True) is None
        with pytest.raises(NotFoundError):
            await repo.delete(second, hard=True)


async def test_identity_map_hit_still_hides_soft_deleted_row(db: Database) -> None:
    (key,) = await seed(db, 1)
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        await repo.get(key)  # now in the identity map
        await repo.delete(key)
        assert await repo.get_or_none(key) is None


async def test_hard_delete_checks_expected_version(db: Database) -> None:
    (key,) = await seed(db, 1)
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        with pytest.raises(StaleVersionError):
            await repo.delete(key, hard=True, expected_version=5)
        await repo.delete(key, hard=True, expected_version=1)


async def test_upsert_inserts_then_updates(db: Database) -> None:
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        created = await repo.upsert({"sku": "u-1", "name": "first"}, conflict_on=["sku"])
        assert created.version == 1
        again = await repo.upsert({"sku": "u-1", "name": "second"}, conflict_on=["sku"])
        assert again.id == created.id
        assert again.name == "second"
        assert again.version == 2
        assert await repo.count(filters={"name": ["first", "second"]}) == 1


async def test_tenant_scoping_reads_writes_and_fails_closed(db: Database) -> None:
    async with db.unit_of_work() as uow:
        repo = DocRepository(uow.session)
        acme = await repo.add(Doc(slug="a", title="acme doc"))
        assert acme.tenant_id == "acme"
    TENANT["id"] = "globex"
    async with db.unit_of_work() as uow:
        repo = DocRepository(uow.session)
        await repo.add_many([{"slug": "a", "title": "globex doc"}])
        assert [doc.title for doc in await repo.list()] == ["globex doc"]
        assert await repo.get_or_none(acme.id) is None
        with pytest.raises(NotFoundError):
            await repo.update(acme.id, {"title": "hijacked"})
        with pytest.raises(NotFoundError):
            await repo.delete(acme.id)
        with pytest.raises(TenantScopeError):
            await repo.add(Doc(slug="b", title="x", tenant_id="acme"))
    async with db.unit_of_work() as uow:
        # A cross-tenant upsert on the same key must not overwrite acme's row.
        with pytest.raises(ConflictError):
            await DocRepository(uow.session).upsert(
                {"id": acme.id, "slug": "zz", "title": "hijacked"}
            )
    TENANT["id"] = None
    async with db.unit_of_work() as uow:
        with pytest.raises(TenantScopeError):
            await DocRepository(uow.session).list()
        everything = (
            await uow.session.scalars(select(Doc).execution_options(all_tenants=True))
        ).all()
        assert sorted(doc.title for doc in everything) == ["acme doc", "globex doc"]


async def test_keyset_pages_cover_table_exactly_once(db: Database) -> None:
    keys = await seed(db, 53)
    for sort in (None, "name", "-rank,name", "-created_at"):
        seen: list[uuid.UUID] = []
        cursor: str | None = None
        async with db.unit_of_work() as uow:
            repo = ItemRepository(uow.session)
            while True:
                page = await repo.page(repo.keyset_request(limit="10", cursor=cursor, sort=sort))
                seen.extend(item.id for item in page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
        assert len(seen) == len(set(seen)) == 53, sort
        assert set(seen) == set(keys)


async def test_keyset_paging_with_concurrent_inserts_never_repeats_or_skips(
    db: Database,
) -> None:
    """A writer inserts rows (with random sort values) while a reader pages through."""
    original = set(await seed(db, 120))
    rng = random.Random(7)
    stop = asyncio.Event()
    inserted = 0

    async def writer() -> None:
        nonlocal inserted
        while not stop.is_set():
            async with db.unit_of_work() as uow:
                await ItemRepository(uow.session).add(
                    Item(
                        sku=f"new-{inserted}",
                        name=f"item-{rng.randrange(7)}",
                        rank=rng.randrange(5),
                    )
                )
            inserted += 1
            await asyncio.sleep(0)

    writer_task = asyncio.create_task(writer())
    try:
        seen: list[uuid.UUID] = []
        cursor: str | None = None
        pages = 0
        while True:
            async with db.unit_of_work() as uow:  # a fresh transaction per page, like HTTP
                repo = ItemRepository(uow.session)
                page = await repo.page(
                    repo.keyset_request(limit=7, cursor=cursor, sort="name,-rank")
                )
            pages += 1
            seen.extend(item.id for item in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
            await asyncio.sleep(0.002)
    finally:
        stop.set()
        await writer_task
    assert inserted > 0
    assert pages > 10
    assert len(seen) == len(set(seen)), "a row was repeated"
    assert original <= set(seen), "a row that existed throughout was skipped"


async def test_offset_page_has_total_and_total_order(db: Database) -> None:
    await seed(db, 25)
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        first = await repo.page_offset(repo.offset_request(limit=10, offset=0, sort="rank"))
        second = await repo.page_offset(repo.offset_request(limit=10, offset=10, sort="rank"))
        third = await repo.page_offset(repo.offset_request(limit=10, offset=20, sort="rank"))
    assert first.total == 25
    assert len(third.items) == 5
    ids = [item.id for page in (first, second, third) for item in page.items]
    assert len(set(ids)) == 25


async def test_page_size_is_clamped(db: Database) -> None:
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        assert repo.keyset_request(limit=10_000).limit == 100
        assert repo.keyset_request().limit == 20


async def test_cursor_from_another_sort_or_tampered_is_rejected(db: Database) -> None:
    await seed(db, 5)
    async with db.unit_of_work() as uow:
        repo = ItemRepository(uow.session)
        page = await repo.page(repo.keyset_request(limit=2, sort="name"))
        assert page.next_cursor is not None
        with pytest.raises(InvalidQueryError):
            repo.keyset_request(cursor=page.next_cursor, sort="rank")
        tampered = page.next_cursor[:-2] + ("AA" if page.next_cursor[-2:] != "AA" else "BB")
        with pytest.raises(InvalidQueryError):
            repo.keyset_request(cursor=tampered, sort="name")
