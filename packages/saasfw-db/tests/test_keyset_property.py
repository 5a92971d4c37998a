"""Property: keyset pages, concatenated, are exactly the table in the requested total order.

Runs against the real databases (SQLite and PostgreSQL) with many duplicate sort values
and mixed directions, where a missing tie-break or a wrong predicate would repeat or skip.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData, String, delete
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from saasfw.db import BigIntPrimaryKey, Database, Repository

DatabaseFactory = Callable[..., Awaitable[Database]]


class Model(DeclarativeBase):
    metadata = MetaData()


class Row(BigIntPrimaryKey, Model):
    __tablename__ = "rows"
    name: Mapped[str] = mapped_column(String(10))
    rank: Mapped[int]


class RowRepository(Repository[Row]):
    model = Row
    sortable = frozenset({"name", "rank"})


ROWS = st.lists(
    st.tuples(st.text(alphabet="abc", min_size=1, max_size=2), st.integers(-2, 2)),
    max_size=40,
)
SORTS = st.sampled_from(["", "name", "-name", "rank,name", "-rank,name", "name,-rank", "-rank"])


@pytest.fixture
async def db(database_factory: DatabaseFactory) -> Database:
    return await database_factory(Model.metadata)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=ROWS, sort=SORTS, limit=st.integers(1, 7))
async def test_pages_concatenate_to_the_sorted_table(
    db: Database, rows: list[tuple[str, int]], sort: str, limit: int
) -> None:
    async with db.unit_of_work() as uow:
        await uow.session.execute(delete(Row))
        await RowRepository(uow.session).add_many({"name": n, "rank": r} for n, r in rows)
    async with db.unit_of_work() as uow:
        repo = RowRepository(uow.session)
        everything = [(row.id, row.name, row.rank) for row in await repo.list(limit=100)]
        got: list[int] = []
        cursor: str | None = None
        while True:
            page = await repo.page(repo.keyset_request(limit=limit, cursor=cursor, sort=sort))
            assert len(page.items) <= limit
            got.extend(row.id for row in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
    # Python's sort is stable, so sorting by id first gives the id tie-break.
    reference = sorted(everything, key=lambda row: row[0])
    for key in reversed([part for part in sort.split(",") if part]):
        index = 1 if key.lstrip("-") == "name" else 2
        reference = sorted(reference, key=lambda row: row[index], reverse=key.startswith("-"))
    assert got == [row[0] for row in reference]
    assert len(got) == len(rows)
