"""Applying the orders events to each customer's totals: once per event, audited, logged.

Each handler runs inside the consumer's unit of work (saasfw.messaging's inbox): the
projection's change, its ``projection_log`` row, its audit event and the inbox row commit
together, so a redelivered event changes nothing twice. Events of one order arrive in
order (the orders service keys them by order id); the per-order ``version`` guards anyway,
so a replayed older event is skipped as ``stale`` instead of undoing a newer one.

The actor, tenant and correlation id come from the event's signed envelope (the orders
request that made the change), never from the payload: they reach the audit record and,
through :class:`saasfw.messaging.EventLogFilter`, every log line written while handling.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from projections_service._tables import (
    ERASED_EMAIL,
    customer_totals,
    erased_customers,
    projected_orders,
    projection_log,
)
from saasfw.app import EventHandlers
from saasfw.audit import Actor, AuditOutbox, Resource
from saasfw.messaging import CloudEvent, EventLogFilter, Received

__all__ = [
    "CUSTOMER_ERASED",
    "ORDER_CREATED",
    "ORDER_DELETED",
    "ORDER_UPDATED",
    "CustomerErasedV1",
    "OrderDeletedV1",
    "OrderStateV1",
    "build_handlers",
]

ORDER_CREATED = "orders.order.created.v1"
ORDER_UPDATED = "orders.order.updated.v1"
ORDER_DELETED = "orders.order.deleted.v1"
CUSTOMER_ERASED = "orders.customer.erased.v1"

_log = logging.getLogger("projections_service.projector")
_log.addFilter(EventLogFilter())  # event id, type, correlation id, actor, tenant per line

AuditSource = Callable[[], AuditOutbox | None]


class OrderStateV1(BaseModel):
    """What this service reads of ``orders.order.created.v1`` / ``updated.v1``.

    A tolerant reader: fields the producer adds later are ignored.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    order_id: str
    customer_email: str
    quantity: int
    unit_price_cents: int
    currency: str
    version: int


class OrderDeletedV1(BaseModel):
    """What this service reads of ``orders.order.deleted.v1``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    order_id: str
    version: int


class CustomerErasedV1(BaseModel):
    """What this service reads of ``orders.customer.erased.v1``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    customer_email: str


class TenantMismatch(ValueError):
    """The event names no tenant, or another tenant than the order's (never applied)."""


def _tenant(event: CloudEvent, row: Any) -> str:
    if event.tenant is None:
        raise TenantMismatch(f"event {event.id} carries no tenant")
    if row is not None and row["tenant"] != event.tenant:
        raise TenantMismatch(f"event {event.id} names another tenant than its order")
    return event.tenant


async def _current(session: AsyncSession, order_id: str) -> Any:
    query = select(projected_orders).where(projected_orders.c.order_id == order_id)
    return (await session.execute(query.with_for_update())).mappings().first()


async def _add_to_totals(
    session: AsyncSession, tenant: str, email: str, currency: str, cents: int, count: int
) -> None:
    now = time.time()
    key = (
        (customer_totals.c.tenant == tenant)
        & (customer_totals.c.customer_email == email)
        & (customer_totals.c.currency == currency)
    )
    changed = await session.execute(
        update(customer_totals)
        .where(key)
        .values(
            order_count=customer_totals.c.order_count + count,
            total_cents=customer_totals.c.total_cents + cents,
            updated_at=now,
        )
    )
    if changed.rowcount == 0:  # type: ignore[attr-defined]
        # A concurrent first insert for the same customer fails this transaction with an
        # integrity error: the consumer retries the event, which then takes the update path.
        await session.execute(
            insert(customer_totals).values(
                tenant=tenant,
                customer_email=email,
                currency=currency,
                order_count=count,
                total_cents=cents,
                updated_at=now,
            )
        )


async def _record(
    session: AsyncSession,
    received: Received[Any],
    order_id: str,
    outcome: str,
    audit: AuditOutbox | None,
    details: dict[str, Any],
    resource_type: str = "order",
) -> None:
    """The log row, the audit event and the log line of one handled event."""
    event = received.event
    await session.execute(
        insert(projection_log).values(
            event_id=event.id,
            event_type=event.type,
            order_id=order_id,
            sequence=event.sequence,
            outcome=outcome,
            correlation_id=event.correlationid,
            actor=event.actor,
            applied_at=time.time(),
        )
    )
    if audit is not None and outcome == "applied":
        actor = (
            Actor(id=event.actor, kind="principal", tenant=event.tenant) if event.actor else None
        )
        await audit.stage(
            session,
            "projections.customer_totals.updated",
            resource=Resource(resource_type, order_id),
            details={"event_id": event.id, "event_type": event.type, **details},
            actor=actor,
            correlation_id=event.correlationid,
        )
    _log.info(
        "order %s projected from %s (%s)",
        order_id,
        event.type,
        outcome,
        extra={"order_id": order_id, "sequence": event.sequence, "outcome": outcome},
    )


def _digest(tenant: str, email: str) -> str:
    return hashlib.sha256(f"{tenant}\n{email.strip().lower()}".encode()).hexdigest()


async def _erased(session: AsyncSession, tenant: str, email: str) -> bool:
    query = select(erased_customers.c.tenant).where(
        erased_customers.c.tenant == tenant,
        erased_customers.c.email_digest == _digest(tenant, email),
    )
    return (await session.execute(query)).first() is not None


async def apply_state(
    received: Received[OrderStateV1], session: AsyncSession, audit: AuditOutbox | None
) -> None:
    """An order was created or changed: move its amount to its (possibly new) customer."""
    data = received.data
    row = await _current(session, data.order_id)
    tenant = _tenant(received.event, row)
    if row is not None and (row["deleted"] or row["version"] >= data.version):
        await _record(session, received, data.order_id, "stale", audit, {})
        return
    if row is not None:
        old = (row["customer_email"], row["currency"], -row["amount_cents"])
        await _add_to_totals(session, tenant, old[0], old[1], old[2], -1)
    amount = data.quantity * data.unit_price_cents
    email = data.customer_email
    if email != ERASED_EMAIL and await _erased(session, tenant, email):
        email = ERASED_EMAIL  # made before the erasure, delivered after it
    await _add_to_totals(session, tenant, email, data.currency, amount, 1)
    values = {
        "tenant": tenant,
        "customer_email": email,
        "currency": data.currency,
        "amount_cents": amount,
        "version": data.version,
        "deleted": False,
        "updated_at": time.time(),
    }
    if row is None:
        await session.execute(insert(projected_orders).values(order_id=data.order_id, **values))
    else:
        where = projected_orders.c.order_id == data.order_id
        await session.execute(update(projected_orders).where(where).values(**values))
    delta = amount - (row["amount_cents"] if row is not None else 0)
    details = {
        "version": data.version,
        "amount_delta_cents": delta,
        "sequence": received.event.sequence,
    }
    await _record(session, received, data.order_id, "applied", audit, details)


async def apply_deleted(
    received: Received[OrderDeletedV1], session: AsyncSession, audit: AuditOutbox | None
) -> None:
    """An order was deleted: its amount leaves its customer's totals (once)."""
    data = received.data
    row = await _current(session, data.order_id)
    tenant = _tenant(received.event, row)
    if row is None or row["deleted"]:
        await _record(session, received, data.order_id, "stale", audit, {})
        return
    await _add_to_totals(
        session, tenant, row["customer_email"], row["currency"], -row["amount_cents"], -1
    )
    where = projected_orders.c.order_id == data.order_id
    await session.execute(
        update(projected_orders).where(where).values(deleted=True, updated_at=time.time())
    )
    details = {"amount_delta_cents": -row["amount_cents"], "sequence": received.event.sequence}
    await _record(session, received, data.order_id, "applied", audit, details)


async def apply_erasure(
    received: Received[CustomerErasedV1], session: AsyncSession, audit: AuditOutbox | None
) -> None:
    """A customer was erased upstream: its address leaves every row here (its orders and
    totals move to ``<erased>``), and later events naming it are applied under
    ``<erased>`` too. Idempotent."""
    tenant = _tenant(received.event, None)
    email = received.data.customer_email.strip().lower()
    digest = _digest(tenant, email)
    if not await _erased(session, tenant, email):
        await session.execute(
            insert(erased_customers).values(
                tenant=tenant, email_digest=digest, erased_at=time.time()
            )
        )
    mine = (customer_totals.c.tenant == tenant) & (
        func.lower(customer_totals.c.customer_email) == email
    )
    totals = (await session.execute(select(customer_totals).where(mine))).mappings().all()
    for row in totals:
        await _add_to_totals(
            session, tenant, ERASED_EMAIL, row["currency"], row["total_cents"], row["order_count"]
        )
    await session.execute(delete(customer_totals).where(mine))
    orders = (projected_orders.c.tenant == tenant) & (
        func.lower(projected_orders.c.customer_email) == email
    )
    moved = await session.execute(
        update(projected_orders).where(orders).values(customer_email=ERASED_EMAIL)
    )
    count = int(moved.rowcount or 0)  # type: ignore[attr-defined]
    # The log and the audit name the digest, never the address.
    details = {"orders": count}
    await _record(session, received, digest[:16], "applied", audit, details, "customer")


def build_handlers(queue: str, audit: AuditSource) -> EventHandlers:
    """The service's consumer: the orders service's events on ``queue``.

    ``audit`` returns the running audit outbox (None when audit is off); it is asked per
    event because the outbox exists only while the app runs.
    """
    handlers = EventHandlers(queue)

    @handlers.handler(ORDER_CREATED, OrderStateV1)
    async def created(received: Received[OrderStateV1], session: AsyncSession) -> None:
        await apply_state(received, session, audit())

    @handlers.handler(ORDER_UPDATED, OrderStateV1)
    async def updated(received: Received[OrderStateV1], session: AsyncSession) -> None:
        await apply_state(received, session, audit())

    @handlers.handler(ORDER_DELETED, OrderDeletedV1)
    async def deleted(received: Received[OrderDeletedV1], session: AsyncSession) -> None:
        await apply_deleted(received, session, audit())

    @handlers.handler(CUSTOMER_ERASED, CustomerErasedV1)
    async def erased(received: Received[CustomerErasedV1], session: AsyncSession) -> None:
        await apply_erasure(received, session, audit())

    return handlers
