"""Request and response bodies: strict, bounded, no control characters anywhere."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "ApiKeyCreate",
    "ApiKeyCreated",
    "Login",
    "OrderCreate",
    "OrderOut",
    "OrderPage",
    "OrderUpdate",
    "Refresh",
    "TokenResponse",
]

Email = Annotated[
    str,
    StringConstraints(
        max_length=254,
        pattern=r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$",
    ),
]
Sku = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{0,63}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Text = Annotated[str, StringConstraints(max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")]
Status = Literal["open", "paid", "shipped", "cancelled"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrderCreate(_Strict):
    """A new order; the tenant is the caller's, never part of the body."""

    customer_email: Email = Field(examples=["buyer@example.com"])
    sku: Sku = Field(examples=["WIDGET-1"])
    quantity: int = Field(ge=1, le=10_000, examples=[2])
    unit_price_cents: int = Field(ge=0, le=100_000_000, examples=[1999])
    currency: Currency = Field(default="EUR", examples=["EUR"])
    note: Text | None = None


class OrderUpdate(_Strict):
    """A partial update; ``version`` is the version you read (optimistic locking)."""

    version: int = Field(ge=1, le=2_147_483_647, description="the version you last read")
    status: Status | None = None
    quantity: int | None = Field(default=None, ge=1, le=10_000)
    note: Text | None = None


class OrderOut(BaseModel):
    """An order as stored."""

    id: uuid.UUID
    customer_email: str
    sku: str
    quantity: int
    unit_price_cents: int
    currency: str
    status: Status
    note: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    updated_by: str | None

    model_config = ConfigDict(from_attributes=True)


class OrderPage(BaseModel):
    """One page of orders; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[OrderOut]
    next_cursor: str | None
    limit: int


Username = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9._-]+$")]
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Token = Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class Login(_Strict):
    """Credentials of a user."""

    username: Username = Field(examples=["alice"])
    password: Password = Field(examples=["alice-demo-password"])


class Refresh(_Strict):
    """A refresh token, used once."""

    refresh_token: Token


class TokenResponse(BaseModel):
    """An access token and the refresh token that rotates it (OAuth 2.0 field names)."""

    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105  # nosec B105 - a scheme name
    expires_in: int


class ApiKeyCreate(_Strict):
    """A new API key for a machine client of the caller's tenant."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\w .:-]+$")]
    scopes: list[Literal["orders:read", "orders:write"]] = Field(min_length=1, max_length=2)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyCreated(BaseModel):
    """The key, shown this once and never stored (the service keeps a keyed hash)."""

    key: str
    key_id: str
    name: str
    scopes: list[str]
    expires_at: float | None
