"""The ``users`` table: who may log in, with which roles and tenant, and whether still active.

Login reads it, every token refresh asks it (:class:`UserDirectory` is the
``SubjectDirectory`` port of saasfw.security), and the admin routes change it. The demo
users of ``config/`` are copied in at start-up outside production; rows already there are
kept, so a disable or a role change survives restarts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from saasfw.security import SubjectState

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

    from orders_service._settings import DemoUser

__all__ = ["SEEDED_ENVIRONMENTS", "User", "UserDirectory", "users_table"]

SEEDED_ENVIRONMENTS = frozenset({"development", "test"})
"""Where the demo users of the settings are copied into the table (never production)."""

_metadata = sa.MetaData()
users_table = sa.Table(
    "users",
    _metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("roles", sa.Text(), nullable=False),  # space-separated role names
    sa.Column("active", sa.Boolean(), nullable=False),
)


@dataclass(frozen=True, slots=True)
class User:
    """One row of ``users``."""

    username: str
    password_hash: str = field(repr=False)
    tenant: str
    roles: tuple[str, ...]
    active: bool


def _user(row: sa.Row[Any]) -> User:
    return User(
        username=row.username,
        password_hash=row.password_hash,
        tenant=row.tenant,
        roles=tuple(row.roles.split()),
        active=bool(row.active),
    )


class UserDirectory:
    """The users table over the service's engine (search path: the service's schema)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def get(self, username: str) -> User | None:
        """The user, or None when there is no such row."""
        query = sa.select(users_table).where(users_table.c.username == username)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _user(row)

    async def current(self, subject: str) -> SubjectState | None:
        """saasfw.security's ``SubjectDirectory``: asked at every token refresh."""
        user = await self.get(subject)
        if user is None:
            return None
        return SubjectState(active=user.active, roles=frozenset(user.roles), tenant=user.tenant)

    async def set_active(
        self, username: str, active: bool, *, conn: AsyncConnection | None = None
    ) -> bool:
        """Enable or disable a user; False when there is no such user.

        With ``conn`` the change joins that open transaction (and its audit event).
        """
        return await self._write(
            users_table.update().where(users_table.c.username == username).values(active=active),
            conn,
        )

    async def set_roles(
        self, username: str, roles: Iterable[str], *, conn: AsyncConnection | None = None
    ) -> bool:
        """Replace a user's roles; False when there is no such user."""
        joined = " ".join(sorted(set(roles)))
        return await self._write(
            users_table.update().where(users_table.c.username == username).values(roles=joined),
            conn,
        )

    async def delete(self, username: str, *, conn: AsyncConnection | None = None) -> bool:
        """Remove a user; False when there was none."""
        return await self._write(
            users_table.delete().where(users_table.c.username == username), conn
        )

    async def _write(self, statement: sa.Executable, conn: AsyncConnection | None) -> bool:
        if conn is not None:
            return bool((await conn.execute(statement)).rowcount)
        async with self.engine.begin() as own:
            return bool((await own.execute(statement)).rowcount)

    async def seed(self, users: Mapping[str, DemoUser]) -> int:
        """Insert the users that are not in the table yet; return how many were added.

        Idempotent and safe for replicas starting together (``ON CONFLICT DO NOTHING``):
        existing rows are never overwritten, so a disabled demo user stays disabled.
        """
        if not users:
            return 0
        rows = [
            {
                "username": name,
                "password_hash": user.password_hash,
                "tenant": user.tenant,
                "roles": " ".join(sorted(set(user.roles))),
                "active": True,
            }
            for name, user in sorted(users.items())
        ]
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            statement: sa.Insert = pg_insert(users_table).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            statement = sqlite_insert(users_table).on_conflict_do_nothing()
        added = 0
        async with self.engine.begin() as conn:
            # One statement per row: executemany does not report reliable row counts.
            for row in rows:
                added += (await conn.execute(statement, row)).rowcount
        return added
