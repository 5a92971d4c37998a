"""Provision a PostgreSQL schema and role per service (database-per-service isolation)."""

from __future__ import annotations

from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from saasfw.db._settings import validate_identifier


async def provision_postgres_service(
    admin: AsyncConnection,
    *,
    schema: str,
    role: str,
    password: SecretStr | None = None,
) -> None:
    """Create ``role`` owning only ``schema``; nobody else gets any right on it.

    Run it once per service as an administrator (in a deployment job, not in the service).
    Afterwards the service logs in as ``role``: its tables live in ``schema`` (also its
    ``search_path``), and another service's role gets "permission denied" on them because
    ``USAGE`` on the schema is revoked from ``PUBLIC``. The role cannot create objects in
    ``public`` (PostgreSQL 15+ default, enforced here for older servers too).

    Idempotent: an existing role or schema is kept (the password is reset when given).
    Commit the connection's transaction afterwards.
    """
    validate_identifier(schema, "schema")
    validate_identifier(role, "role")
    exists = await admin.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
    verb = "ALTER" if exists else "CREATE"
    # Identifiers cannot be bound parameters; both were validated above. The password is
    # quoted by the server (format %L), so it never passes through string building here.
    options = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION"
    if password is not None:
        statement = await admin.scalar(
            text(
                f"SELECT format('{verb} ROLE %I {options} PASSWORD %L', "
                "CAST(:r AS text), CAST(:p AS text))"
            ),
            {"r": role, "p": password.get_secret_value()},
        )
    else:
        statement = await admin.scalar(
            text(f"SELECT format('{verb} ROLE %I {options}', CAST(:r AS text))"), {"r": role}
        )
    await admin.exec_driver_sql(str(statement))
    await admin.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION "{role}"')
    await admin.exec_driver_sql(f'REVOKE ALL ON SCHEMA "{schema}" FROM PUBLIC')
    await admin.exec_driver_sql(f'ALTER ROLE "{role}" SET search_path = "{schema}"')
    await admin.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
