"""Orders CRUD: tenant-scoped, optimistic locking, soft delete, every mutation audited."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from orders_service._customers import ERASED_EMAIL, customer_subject, refuse_erased_customer
from orders_service._events import (
    ORDER_CREATED,
    ORDER_UPDATED,
    EventsOrNone,
    announce_deleted,
    announce_state,
)
from orders_service._models import Order, OrderRepository
from orders_service._schemas import OrderCreate, OrderOut, OrderPage, OrderUpdate, Status
from saasfw.app import AuditTrail, DbSession, database, problem_responses
from saasfw.audit import Resource
from saasfw.db import Database
from saasfw.security import Principal, require

__all__ = ["router"]

router = APIRouter(prefix="/orders", tags=["orders"])


# Every mutation stages its audit event in the transaction that makes the change: both are
# committed, or neither (a crash after the commit cannot lose the event; the relay
# delivers it). Staging comes last, just before the commit: it holds the ordering key.
Audit = AuditTrail
Db = Annotated[Database, Depends(database)]
Reader = Annotated[Principal, Depends(require("orders:read"))]
Writer = Annotated[Principal, Depends(require("orders:write"))]
Deleter = Annotated[Principal, Depends(require("orders:delete"))]

# 400/401/403/413/422/429/500/503 are documented app-wide by saasfw.app.
_READ_ERRORS = problem_responses(404)
_WRITE_ERRORS = problem_responses(404, 409)


def _subject(order: Order) -> str | None:
    """The order's customer, the data subject of its audit events (None once erased)."""
    if order.customer_email == ERASED_EMAIL:
        return None
    return customer_subject(order.tenant_id, order.customer_email)


def _audited(order: Order) -> dict[str, Any]:
    # customer_email is listed in audit.encryption.fields: the sinks only see ciphertext.
    return {
        "customer_email": order.customer_email,
        "sku": order.sku,
        "quantity": order.quantity,
        "status": order.status,
        "version": order.version,
    }


@router.get("", responses=_READ_ERRORS, summary="List the orders of your tenant")
async def list_orders(
    _: Reader,
    session: DbSession,
    status_filter: Annotated[Status | None, Query(alias="status")] = None,
    limit: Annotated[str | None, Query(max_length=12)] = None,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> OrderPage:
    """Newest first, keyset-paginated (stable while orders are added)."""
    orders = OrderRepository(session)
    request = orders.keyset_request(limit=limit, cursor=cursor)
    filters = {"status": status_filter} if status_filter else None
    page = await orders.page(request, filters=filters)
    return OrderPage(
        items=[OrderOut.model_validate(o) for o in page.items],
        next_cursor=page.next_cursor,
        limit=page.limit,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=_WRITE_ERRORS,
    summary="Create an order",
)
async def create_order(
    body: OrderCreate,
    principal: Writer,
    db: Db,
    audit: Audit,
    events: EventsOrNone,
    response: Response,
    request: Request,
) -> OrderOut:
    """The order belongs to your tenant; ``created_by`` is you. 409 for an erased customer."""
    if audit is not None and principal.tenant is not None:
        await refuse_erased_customer(request, principal.tenant, body.customer_email)
    async with db.unit_of_work() as uow:
        order = await OrderRepository(uow.session).add(Order(**body.model_dump(), status="open"))
        # The event commits with the order (keyed by the order: its events stay in order).
        await announce_state(events, uow.session, ORDER_CREATED, order)
        if audit is not None:
            await audit.stage(
                uow.session,
                "orders.order.created",
                resource=Resource("order", str(order.id)),
                details=_audited(order),
                subject=_subject(order),
            )
    if audit is not None:
        audit.wake()
    out = OrderOut.model_validate(order)
    response.headers["Location"] = f"/orders/{order.id}"
    return out


@router.get("/{order_id}", responses=_READ_ERRORS, summary="Read one order")
async def get_order(order_id: uuid.UUID, _: Reader, session: DbSession) -> OrderOut:
    """404 for unknown, deleted and other tenants' orders alike."""
    return OrderOut.model_validate(await OrderRepository(session).get(order_id))


@router.patch("/{order_id}", responses=_WRITE_ERRORS, summary="Update an order")
async def update_order(
    order_id: uuid.UUID, body: OrderUpdate, _: Writer, db: Db, audit: Audit, events: EventsOrNone
) -> OrderOut:
    """409 when the order changed since the ``version`` you send."""
    values = body.model_dump(exclude_unset=True, exclude={"version"})
    async with db.unit_of_work() as uow:
        orders = OrderRepository(uow.session)
        if values:
            order = await orders.update(order_id, values, expected_version=body.version)
            await announce_state(events, uow.session, ORDER_UPDATED, order)
            if audit is not None:
                await audit.stage(
                    uow.session,
                    "orders.order.updated",
                    resource=Resource("order", str(order_id)),
                    details={**_audited(order), "changed": sorted(values)},
                    subject=_subject(order),
                )
        else:
            order = await orders.get(order_id)
    if values and audit is not None:
        audit.wake()
    return OrderOut.model_validate(order)


@router.delete(
    "/{order_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_WRITE_ERRORS,
    summary="Delete an order (soft)",
)
async def delete_order(
    order_id: uuid.UUID,
    _: Deleter,
    db: Db,
    audit: Audit,
    events: EventsOrNone,
    version: Annotated[int, Query(ge=1, le=2_147_483_647)],
) -> Response:
    """Soft delete: the row stays for the audit trail but is gone from every read."""
    async with db.unit_of_work() as uow:
        await OrderRepository(uow.session).delete(order_id, expected_version=version)
        await announce_deleted(events, uow.session, str(order_id), version)
        if audit is not None:
            await audit.stage(
                uow.session, "orders.order.deleted", resource=Resource("order", str(order_id))
            )
    if audit is not None:
        audit.wake()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
