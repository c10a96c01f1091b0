"""Live sales for managers: today so far, per store, from the ops store (the snapshot lags a run behind)."""

from __future__ import annotations

from datetime import date, datetime

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, OptionalStoreIdQuery
from api.queries.sales import sales_today
from api.security.principals import ManagerPrincipal

router = APIRouter(prefix="/sales", tags=["sales"])


class SalesSoFar(BaseModel):
    """A store's figures since the start of its business day (money in integer cents)."""

    store_id: str  # "all" in the total
    business_day: date | None  # in the store's timezone; null in the total (the stores' days differ)
    transactions: int
    refunds: int
    voids: int
    units: int
    net_revenue_cents: int
    avg_basket_cents: float | None  # sold cents per sale transaction; null without a sale


class SalesToday(BaseModel):
    as_of: datetime
    stores: list[SalesSoFar]  # ordered by store_id
    total: SalesSoFar


@router.get("/today", summary="Sales so far today, per store (live)")
async def today(
    principal: ManagerPrincipal,
    engine: EngineDep,
    store_id: OptionalStoreIdQuery = None,
) -> SalesToday:
    """Transactions, refunds, voids, units, net revenue and average basket (integer cents) since the start
    of each store's business day. Managers see their stores only; ``store_id`` narrows to one."""
    if store_id is not None:
        principal.require_store(store_id)
        scope: frozenset[str] | None = frozenset({store_id})
    else:
        scope = principal.stores
    return SalesToday.model_validate(await run_in_threadpool(sales_today, engine, scope))
