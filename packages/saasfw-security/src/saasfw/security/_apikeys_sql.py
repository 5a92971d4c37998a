"""SQL API key store on SQLAlchemy Core (async engines: asyncpg, aiosqlite, ...)."""

from __future__ import annotations

from typing import Any

from saasfw.security._apikeys import ApiKeyRecord
from saasfw.security._errors import MissingExtraError

__all__ = ["SqlApiKeyStore"]


class SqlApiKeyStore:
    """API key records in a table (default ``api_keys``); hashes only, never keys.

    Args:
        engine: a SQLAlchemy ``AsyncEngine``.
        table_name / schema: where the table lives; create it with :meth:`create_table`
            or your migrations (:attr:`metadata` holds the definition).
    """

    def __init__(self, engine: Any, *, table_name: str = "api_keys", schema: str | None = None):
        try:
            import sqlalchemy as sa
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise MissingExtraError("SqlApiKeyStore", "sql") from None
        self._engine = engine
        self.metadata = sa.MetaData(schema=schema)
        self.table = sa.Table(
            table_name,
            self.metadata,
            sa.Column("key_id", sa.String(32), primary_key=True),
            sa.Column("key_hash", sa.LargeBinary(32), nullable=False),
            sa.Column("pepper_id", sa.String(64), nullable=False),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("principal_id", sa.String(256), nullable=False, index=True),
            sa.Column("tenant", sa.String(256), nullable=True),
            sa.Column("scopes", sa.Text, nullable=False),
            sa.Column("created_at", sa.Double, nullable=False),
            sa.Column("expires_at", sa.Double, nullable=True),
            sa.Column("revoked_at", sa.Double, nullable=True),
        )

    async def create_table(self) -> None:
        """Create the table if missing (use migrations in production); replicas take turns."""
        from saasfw.core import create_missing_tables

        tables = self.metadata.sorted_tables
        await create_missing_tables(
            self._engine, f"saasfw.security.apikeys:{tables[0].fullname}", *tables
        )

    @staticmethod
    def _record(row: Any) -> ApiKeyRecord:
        return ApiKeyRecord(
            key_id=row.key_id,
            key_hash=bytes(row.key_hash),
            pepper_id=row.pepper_id,
            name=row.name,
            principal_id=row.principal_id,
            tenant=row.tenant,
            scopes=frozenset(row.scopes.split()),
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )

    async def add(self, record: ApiKeyRecord) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                self.table.insert().values(
                    key_id=record.key_id,
                    key_hash=record.key_hash,
                    pepper_id=record.pepper_id,
                    name=record.name,
                    principal_id=record.principal_id,
                    tenant=record.tenant,
                    scopes=" ".join(sorted(record.scopes)),
                    created_at=record.created_at,
                    expires_at=record.expires_at,
                    revoked_at=record.revoked_at,
                )
            )

    async def get(self, key_id: str) -> ApiKeyRecord | None:
        async with self._engine.connect() as conn:
            result = await conn.execute(self.table.select().where(self.table.c.key_id == key_id))
            row = result.first()
        return None if row is None else self._record(row)

    async def revoke(self, key_id: str, revoked_at: float) -> bool:
        table = self.table
        async with self._engine.begin() as conn:
            result = await conn.execute(
                table.update()
                .where(table.c.key_id == key_id, table.c.revoked_at.is_(None))
                .values(revoked_at=revoked_at)
            )
            if result.rowcount:
                return True
            exists = await conn.execute(table.select().where(table.c.key_id == key_id))
            return exists.first() is not None

    async def list_for_principal(self, principal_id: str) -> list[ApiKeyRecord]:
        async with self._engine.connect() as conn:
            result = await conn.execute(
                self.table.select()
                .where(self.table.c.principal_id == principal_id)
                .order_by(self.table.c.created_at)
            )
            return [self._record(row) for row in result]
