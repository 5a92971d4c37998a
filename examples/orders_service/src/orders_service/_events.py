"""The events the orders service publishes: versioned types, pydantic payloads, one helper.

``orders.order.created.v1``, ``orders.order.updated.v1`` and ``orders.order.deleted.v1``
are staged in the same unit of work as the change they announce (saasfw.app's
``EventPublisher``: the outbox commits with the order or not at all), keyed by the order id
so one order's events reach every consumer in the order they were made. The envelope
carries the tenant, the actor and the correlation id of the request, signed.

``orders.customer.erased.v1`` tells consumers that a customer's personal data was erased
here, so they forget the address too; it is staged in the transaction that scrubs the
customer's orders.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from orders_service._models import Order
from saasfw.app import messaging, singletons_of
from saasfw.messaging import CloudEvent, Publisher

__all__ = [
    "CUSTOMER_ERASED",
    "ORDER_CREATED",
    "ORDER_DELETED",
    "ORDER_UPDATED",
    "CustomerErasedV1",
    "EventsOrNone",
    "OrderDeletedV1",
    "OrderStateV1",
    "announce_customer_erased",
    "announce_deleted",
    "announce_state",
]

ORDER_CREATED = "orders.order.created.v1"
ORDER_UPDATED = "orders.order.updated.v1"
ORDER_DELETED = "orders.order.deleted.v1"
CUSTOMER_ERASED = "orders.customer.erased.v1"


class OrderStateV1(BaseModel):
    """An order as it is after the change (payload of ``created.v1`` and ``updated.v1``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str
    customer_email: str
    sku: str
    quantity: int
    unit_price_cents: int
    currency: str
    status: str
    version: int


class OrderDeletedV1(BaseModel):
    """An order was deleted (soft); ``version`` is the last version a client saw."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str
    version: int


class CustomerErasedV1(BaseModel):
    """A customer's personal data was erased: forget this address (in the event's tenant)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_email: str


def _publisher_or_none(request: Request) -> Publisher | None:
    store = singletons_of(request.app)
    return store.get(messaging).publisher if store.has(messaging) else None


EventsOrNone = Annotated[Publisher | None, Depends(_publisher_or_none)]
"""The service's publisher, or None when ``components.messaging`` is off."""


def _state(order: Order) -> OrderStateV1:
    return OrderStateV1(
        order_id=str(order.id),
        customer_email=order.customer_email,
        sku=order.sku,
        quantity=order.quantity,
        unit_price_cents=order.unit_price_cents,
        currency=order.currency,
        status=order.status,
        version=order.version,
    )


async def announce_state(
    events: Publisher | None, session: AsyncSession, type: str, order: Order
) -> None:
    """Stage ``created.v1`` or ``updated.v1`` for ``order`` in the session's transaction."""
    if events is not None:
        event = CloudEvent.create(type, _state(order), subject=f"order/{order.id}")
        await events.publish(session, event, key=str(order.id))


async def announce_deleted(
    events: Publisher | None, session: AsyncSession, order_id: str, version: int
) -> None:
    """Stage ``deleted.v1`` for the order in the session's transaction."""
    if events is not None:
        payload = OrderDeletedV1(order_id=order_id, version=version)
        event = CloudEvent.create(ORDER_DELETED, payload, subject=f"order/{order_id}")
        await events.publish(session, event, key=order_id)


async def announce_customer_erased(
    events: Publisher | None, connection: AsyncSession | AsyncConnection, email: str
) -> None:
    """Stage ``customer.erased.v1`` in the transaction that scrubs the customer's orders."""
    if events is not None:
        payload = CustomerErasedV1(customer_email=email.strip().lower())
        event = CloudEvent.create(CUSTOMER_ERASED, payload, subject="customer")
        await events.publish(connection, event, key=f"customer:{payload.customer_email}")
