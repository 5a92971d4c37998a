"""Soft-delete and tenant criteria also apply to relationship loads (lazy and eager)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import ForeignKey, MetaData, String, select
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

from saasfw.db import BigIntPrimaryKey, Database, Repository, SoftDeleteMixin, TenantMixin

DatabaseFactory = Callable[..., Awaitable[Database]]
TENANT: dict[str, str | None] = {"id": "acme"}


class Model(AsyncAttrs, DeclarativeBase):
    metadata = MetaData()


class Project(BigIntPrimaryKey, TenantMixin, Model):
    __tablename__ = "projects"
    name: Mapped[str] = mapped_column(String(50))
    tasks: Mapped[list[Task]] = relationship(back_populates="project", order_by="Task.id")


class Task(BigIntPrimaryKey, SoftDeleteMixin, Model):
    __tablename__ = "tasks"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    title: Mapped[str] = mapped_column(String(50))
    project: Mapped[Project] = relationship(back_populates="tasks")


class TaskRepository(Repository[Task]):
    model = Task


@pytest.fixture
async def db(database_factory: DatabaseFactory) -> Database:
    TENANT["id"] = "acme"
    return await database_factory(Model.metadata, tenant_provider=lambda: TENANT["id"])


async def test_deleted_children_are_hidden_from_eager_and_lazy_loads(db: Database) -> None:
    async with db.unit_of_work() as uow:
        project = Project(name="p", tasks=[Task(title="keep"), Task(title="drop")])
        uow.session.add(project)
        await uow.session.flush()
        drop_id = project.tasks[1].id
        await TaskRepository(uow.session).delete(drop_id)
    async with db.unit_of_work() as uow:
        eager = (
            await uow.session.scalars(select(Project).options(selectinload(Project.tasks)))
        ).one()
        assert [task.title for task in eager.tasks] == ["keep"]
    async with db.unit_of_work() as uow:
        lazy = (await uow.session.scalars(select(Project))).one()
        assert [task.title for task in await lazy.awaitable_attrs.tasks] == ["keep"]


async def test_parents_of_other_tenants_are_not_reachable_through_joins(db: Database) -> None:
    async with db.unit_of_work() as uow:
        uow.session.add(Project(name="acme project", tasks=[Task(title="a")]))
    TENANT["id"] = "globex"
    async with db.unit_of_work() as uow:
        rows = (await uow.session.execute(select(Task.title).join(Task.project))).all()
        assert rows == []
        assert (await uow.session.scalars(select(Project))).all() == []
