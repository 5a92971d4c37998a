"""The orders service's settings: the framework sections plus its own."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from saasfw.app import ServiceSettings

__all__ = ["DemoUser", "OrdersLimits", "OrdersSettings"]


class DemoUser(BaseModel):
    """A user who can log in: an argon2id PHC hash, never a password."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    password_hash: str = Field(pattern=r"^\$argon2id\$", repr=False)
    tenant: str = Field(pattern=r"^[a-z0-9-]{1,64}$")
    roles: list[str] = Field(default_factory=list)


class OrdersLimits(BaseModel):
    """Per-route rate limits (``limits`` notation, e.g. ``10/minute``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    login: str = Field(default="20/minute", description="login attempts per client address")
    api_keys: str = Field(default="5/minute", description="API keys created per principal")


class OrdersSettings(ServiceSettings):
    """Settings of the orders service (env: ``SAASFW_<SECTION>__<FIELD>``)."""

    users: dict[str, DemoUser] = Field(
        default_factory=dict, description="Users by login name (demo: config/*/base.yaml)"
    )
    api_key_scopes: list[str] = Field(
        default_factory=lambda: ["orders:read", "orders:write"],
        description="Scopes an admin may grant to a machine client's API key",
    )
    limits: OrdersLimits = Field(default_factory=OrdersLimits)
