"""The projection's API: each customer's order totals, confined to the caller's tenant."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from projections_service._tables import customer_totals
from saasfw.app import DbSession, problem_responses
from saasfw.security import Principal, require

__all__ = ["CustomerTotal", "CustomerTotals", "router"]

router = APIRouter(prefix="/customer-totals", tags=["projection"])

Reader = Annotated[Principal, Depends(require("totals:read"))]


class CustomerTotal(BaseModel):
    """One customer's live (not deleted) orders in one currency."""

    model_config = ConfigDict(frozen=True)

    customer_email: str
    currency: str
    order_count: int
    total_cents: int


class CustomerTotals(BaseModel):
    """A page of totals, by customer e-mail; ``next_after`` continues the listing."""

    items: list[CustomerTotal]
    next_after: str | None


@router.get("", responses=problem_responses(), summary="Each customer's order totals")
async def list_totals(
    principal: Reader,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=254)] = None,
) -> CustomerTotals:
    """Customers of your tenant with at least one order, ordered by e-mail.

    The totals follow the orders service within moments (they are built from its events).
    """
    if principal.tenant is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "totals are confined to a tenant")
    query = (
        select(customer_totals)
        .where(customer_totals.c.tenant == principal.tenant)
        .where(customer_totals.c.order_count > 0)
        .order_by(customer_totals.c.customer_email, customer_totals.c.currency)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(customer_totals.c.customer_email > after)
    rows = (await session.execute(query)).mappings().all()
    items = [
        CustomerTotal(
            customer_email=r["customer_email"],
            currency=r["currency"],
            order_count=r["order_count"],
            total_cents=r["total_cents"],
        )
        for r in rows[:limit]
    ]
    more = len(rows) > limit
    return CustomerTotals(items=items, next_after=items[-1].customer_email if more else None)
