"""Customers as data subjects: their audit key, their erasure (crypto-shredding) and its route.

An order's customer, named by the tenant and the e-mail address, is the data subject of the
order's audit events: the e-mail is encrypted in every audit record with the customer's own
key. Erasing a customer deletes that key in the shared key table (every replica, every copy
of the audit trail, backups of the log included, can no longer read those fields) and
replaces the e-mail in the customer's orders, soft-deleted ones included, announcing
``orders.customer.erased.v1`` in that transaction so consuming services forget the address
too. The customer can never be the subject of an audit event again: a new order for an
erased address is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, update

from orders_service._events import EventsOrNone, announce_customer_erased
from orders_service._models import Order
from orders_service._schemas import Email
from saasfw.app import audit_logger, current_settings, database, problem_responses, singletons_of
from saasfw.audit import AuditLogger, KeyShreddedError, Resource
from saasfw.db import Database
from saasfw.security import Principal, require

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from saasfw.audit import SubjectKeys
    from saasfw.messaging import Publisher

__all__ = [
    "ERASED_EMAIL",
    "CustomerErased",
    "CustomerErasure",
    "customer_subject",
    "refuse_erased_customer",
    "router",
    "scrub_customer_orders",
]

ERASED_EMAIL = "<erased>"
"""What an erased customer's orders show instead of the e-mail address."""

router = APIRouter(prefix="/admin/customers", tags=["admin"])

Eraser = Annotated[Principal, Depends(require("customers:erase"))]
Audit = Annotated[AuditLogger, Depends(audit_logger)]
Db = Annotated[Database, Depends(database)]


def customer_subject(tenant: str, email: str) -> str:
    """The audit data subject of a tenant's customer (the key store keeps only its hash)."""
    return f"customer:{tenant}:{email.strip().lower()}"


class CustomerErasure(BaseModel):
    """The customer to erase (in the body: an address never belongs in a URL or access log)."""

    model_config = ConfigDict(extra="forbid")

    customer_email: Email = Field(examples=["buyer@example.com"])


class CustomerErased(BaseModel):
    """What the erasure did."""

    key_id: str | None = Field(description="the erased audit key (None: the customer had none)")
    orders_scrubbed: int = Field(description="orders whose customer e-mail was replaced")


@dataclass(frozen=True)
class _Erasure:
    key_id: str | None
    orders_scrubbed: int


async def scrub_customer_orders(
    engine: AsyncEngine, tenant: str, email: str, events: Publisher | None = None
) -> int:
    """Replace the customer's e-mail in all the tenant's orders, soft-deleted ones too.

    With ``events`` (messaging on), ``orders.customer.erased.v1`` is staged in the same
    transaction, so consumers are told exactly when the scrub commits.
    """
    table: Any = Order.__table__
    statement = (
        update(table)
        .where(table.c.tenant_id == tenant)
        .where(func.lower(table.c.customer_email) == email.strip().lower())
        .values(customer_email=ERASED_EMAIL, version=table.c.version + 1)
    )
    async with engine.begin() as connection:
        result = await connection.execute(statement)
        await announce_customer_erased(events, connection, email)
    return int(getattr(result, "rowcount", 0) or 0)


def _subject_keys(request: Request) -> SubjectKeys | None:
    """The service's subject key store (built once per app from the effective settings)."""
    state = request.app.state
    if not hasattr(state, "orders_subject_keys"):
        from saasfw.audit import build_subject_key_store

        settings = singletons_of(request.app).get(current_settings)
        on = settings.components.audit and settings.audit.enabled
        state.orders_subject_keys = build_subject_key_store(settings.audit) if on else None
    keys: SubjectKeys | None = state.orders_subject_keys
    return keys


async def refuse_erased_customer(request: Request, tenant: str, email: str) -> None:
    """409 when the customer was erased: it may never be an audit subject again."""
    keys = _subject_keys(request)
    if keys is None:
        return
    subject = customer_subject(tenant, email)

    def check() -> None:
        keys.ensure([subject])  # reads the row now: another replica may have just erased it
        keys.cipher_for_subject(subject)

    try:
        await anyio.to_thread.run_sync(check)
    except KeyShreddedError:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "The personal data of this customer was erased; orders for this address are "
            "no longer accepted.",
        ) from None


async def erase_customer(
    logger: AuditLogger,
    engine: AsyncEngine,
    tenant: str,
    email: str,
    events: Publisher | None = None,
) -> _Erasure:
    """Shred the customer's audit key (queued events first), then scrub the orders (and
    tell the consumers, with ``events``)."""
    subject = customer_subject(tenant, email)
    key_id = await anyio.to_thread.run_sync(logger.erase_subject, subject)
    scrubbed = await scrub_customer_orders(engine, tenant, email, events)
    return _Erasure(key_id, scrubbed)


@router.post(
    "/erasure",
    responses=problem_responses(409),
    summary="Erase a customer's personal data (crypto-shredding)",
)
async def erase(
    body: CustomerErasure, admin: Eraser, db: Db, audit: Audit, events: EventsOrNone
) -> CustomerErased:
    """Irreversible: the customer's e-mail becomes unreadable in every audit record, on
    every replica and in every copy of the log, and is replaced in the customer's orders.

    Idempotent: erasing again scrubs again and answers the same key id.
    """
    if admin.tenant is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Customers belong to a tenant.")
    done = await erase_customer(audit, db.engine, admin.tenant, body.customer_email, events)
    await audit.arecord(
        "orders.customer.erased",
        action="erase",
        resource=Resource("customer", done.key_id or "-"),
        details={"key_id": done.key_id, "orders_scrubbed": done.orders_scrubbed},
        durable=True,
    )
    return CustomerErased(key_id=done.key_id, orders_scrubbed=done.orders_scrubbed)
