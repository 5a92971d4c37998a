"""Acceptance 6: a service's role cannot read or write another service's schema."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import MetaData, String, insert, select, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from saasfw.db import BigIntPrimaryKey, Database, DbSettings, provision_postgres_service

pytestmark = pytest.mark.postgres


class Model(DeclarativeBase):
    metadata = MetaData()


class Order(BigIntPrimaryKey, Model):
    __tablename__ = "orders"
    secret: Mapped[str] = mapped_column(String(50))


def with_user_and_db(url: str, user: str, database: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}@{host}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", "", ""))


@pytest.fixture
async def cluster(postgres_url: str) -> AsyncIterator[dict[str, Any]]:
    """A private database with two provisioned services (roles + schemas), dropped after."""
    suffix = secrets.token_hex(4)
    database = f"saasfw_db_iso_{suffix}"
    roles = {"billing": f"billing_{suffix}", "orders": f"orders_{suffix}"}
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    admin_url = with_user_and_db(
        postgres_url, urlsplit(postgres_url).username or "postgres", database
    )
    try:
        engine = create_async_engine(admin_url.replace("postgresql://", "postgresql+asyncpg://"))
        try:
            async with engine.begin() as connection:
                for schema, role in roles.items():
                    await provision_postgres_service(connection, schema=schema, role=role)
                # Idempotent: running the deployment job twice changes nothing.
                await provision_postgres_service(connection, schema="orders", role=roles["orders"])
        finally:
            await engine.dispose()
        yield {"database": database, "roles": roles, "url": postgres_url}
    finally:
        # Also after a failed set-up: never leave a database or role behind.
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            for role in roles.values():
                await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await admin.close()


def service_db(cluster: dict[str, Any], service: str) -> Database:
    url = with_user_and_db(cluster["url"], cluster["roles"][service], cluster["database"])
    return Database(DbSettings(url=url), service=service)


async def test_service_cannot_read_or_write_another_services_schema(
    cluster: dict[str, Any],
) -> None:
    orders, billing = service_db(cluster, "orders"), service_db(cluster, "billing")
    try:
        for db in (orders, billing):
            async with db.engine.begin() as connection:
                await connection.run_sync(Model.metadata.create_all)
                await connection.execute(insert(Order).values(secret=f"{db.service} data"))
        async with orders.engine.connect() as connection:
            # Own tables: unqualified names resolve to the own schema.
            assert (await connection.execute(select(Order.secret))).scalar() == "orders data"
            assert (await connection.execute(text("SHOW search_path"))).scalar() == '"orders"'
        attacks = [
            "SELECT secret FROM billing.orders",
            "INSERT INTO billing.orders (secret) VALUES ('forged')",
            "UPDATE billing.orders SET secret = 'x'",
            "DELETE FROM billing.orders",
            "CREATE TABLE billing.planted (id int)",
            "CREATE TABLE public.planted (id int)",
        ]
        for statement in attacks:
            async with orders.engine.connect() as connection:
                with pytest.raises(ProgrammingError, match="permission denied"):
                    await connection.execute(text(statement))
        # Changing the search_path does not help: a schema without USAGE is skipped.
        async with orders.engine.connect() as connection:
            await connection.execute(text("SET search_path TO billing"))
            with pytest.raises(ProgrammingError, match='relation "orders" does not exist'):
                await connection.execute(text("SELECT secret FROM orders"))
        async with billing.engine.connect() as connection:
            assert (await connection.execute(select(Order.secret))).scalar() == "billing data"
    finally:
        await orders.close()
        await billing.close()
