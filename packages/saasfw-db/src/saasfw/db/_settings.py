"""``DbSettings``: the database section of a service's settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy.engine import URL, make_url

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

Backend = Literal["sqlite", "postgresql"]


def validate_identifier(value: str, what: str) -> str:
    """Accept a lower-case SQL identifier (service, schema, role); reject anything else.

    These names end up in DDL and ``search_path``, where they cannot be bound parameters,
    so they are restricted to a safe alphabet instead of being quoted and hoped for.
    """
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a valid identifier: use 1-63 characters of "
            "a-z, 0-9 and _, not starting with a digit"
        )
    return value


class DbSettings(BaseModel):
    """Database settings of one service (env: ``SAASFW_DB__<FIELD>``).

    With no ``url`` the service uses an embedded SQLite file at
    ``<data_dir>/<service>/<service>.db``. With a PostgreSQL URL the service works in its
    own schema (``schema_name``, default: the service name) and should log in as a role
    that owns only that schema (see ``provision_postgres_service``).
    """

    # hide_input_in_errors: a rejected URL may carry a password.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    url: SecretStr | None = Field(
        default=None,
        description="sqlite+aiosqlite:///path or postgresql+asyncpg://user:pw@host/db; "
        "None = SQLite file under data_dir",
    )
    data_dir: Path = Field(default=Path("var"), description="Root of the SQLite files")
    schema_name: str | None = Field(
        default=None, description="PostgreSQL schema of the service (default: service name)"
    )
    pool_size: int = Field(default=5, ge=1, le=1000)
    max_overflow: int = Field(default=10, ge=0, le=1000)
    pool_timeout: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a pooled connection before 503"
    )
    pool_recycle: int = Field(
        default=1800, ge=-1, description="Seconds after which a connection is replaced"
    )
    pool_pre_ping: bool = Field(default=True, description="Test connections on checkout")
    statement_timeout: float | None = Field(
        default=30.0, gt=0, description="PostgreSQL statement_timeout in seconds (None: server)"
    )
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to open a connection")
    sqlite_busy_timeout: float = Field(
        default=5.0, ge=0, description="Seconds SQLite waits for a write lock"
    )
    echo: bool = Field(default=False, description="Log every SQL statement (never in production)")
    health_timeout: float = Field(default=2.0, gt=0, description="Deadline of the health check")
    migrate_on_start: bool = Field(
        default=True,
        description="Upgrade the schema to head at start-up (under the migration lock); "
        "false when a separate step (saasfw-db upgrade, e.g. a Kubernetes Job) migrates and "
        "the service only checks that its schema is at head or ahead",
    )
    default_page_size: int = Field(default=20, ge=1)
    max_page_size: int = Field(default=100, ge=1, le=10_000)
    max_offset: int = Field(default=10_000, ge=0, description="Deepest offset page allowed")
    cursor_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key signing keyset cursors; None = random per process "
        "(cursors then do not survive a restart or cross replicas)",
    )

    @field_validator("schema_name")
    @classmethod
    def _check_schema(cls, value: str | None) -> str | None:
        return None if value is None else validate_identifier(value, "schema_name")

    @field_validator("cursor_secret")
    @classmethod
    def _check_cursor_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 16:
            raise ValueError("cursor_secret must be at least 16 bytes (32+ recommended)")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            url = make_url(value.get_secret_value())
        except Exception:
            # Never echo the URL: it may carry a password.
            raise ValueError("url is not a valid database URL") from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(
                f"url backend {url.get_backend_name()!r} is not supported: "
                "use sqlite+aiosqlite or postgresql+asyncpg"
            )
        if "+" in url.drivername and url.get_driver_name() not in ("aiosqlite", "asyncpg"):
            raise ValueError(
                f"url driver {url.get_driver_name()!r} is not supported: use "
                "sqlite+aiosqlite or postgresql+asyncpg (or omit the driver)"
            )
        return value

    @model_validator(mode="after")
    def _check_sizes(self) -> DbSettings:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must not exceed max_page_size")
        return self

    def sqlalchemy_url(self, service: str) -> URL:
        """The async SQLAlchemy URL of ``service`` (drivers forced to aiosqlite/asyncpg)."""
        if self.url is None:
            path = self.data_dir / service / f"{service}.db"
            return URL.create("sqlite+aiosqlite", database=str(path))
        url = make_url(self.url.get_secret_value())
        if url.get_backend_name() == "sqlite":
            return url.set(drivername="sqlite+aiosqlite")
        return url.set(drivername="postgresql+asyncpg")

    def backend(self) -> Backend:
        """``sqlite`` or ``postgresql``."""
        if self.url is None:
            return "sqlite"
        name = make_url(self.url.get_secret_value()).get_backend_name()
        return "postgresql" if name == "postgresql" else "sqlite"
