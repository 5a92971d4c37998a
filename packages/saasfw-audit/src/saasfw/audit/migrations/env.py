"""Alembic environment of saasfw-audit: runs on the connection the caller passes in."""

from __future__ import annotations

from alembic import context

from saasfw.audit._tables import VERSION_TABLE

_config = context.config
_connection = _config.attributes["connection"]
_schema = _config.attributes.get("schema")

context.configure(
    connection=_connection,
    version_table=VERSION_TABLE,
    version_table_schema=_schema,
)
with context.begin_transaction():
    context.run_migrations()
