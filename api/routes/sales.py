"""Live sales for managers: today so far, per store, from the ops store (the snapshot lags a run behind)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, OptionalStoreIdQuery
from api.queries.sales import sales_today
from api.security.principals import ManagerPrincipal

router = APIRouter(prefix="/sales", tags=["sales"])


@router.get("/today", summary="Sales so far today, per store (live)")
async def today(
    principal: ManagerPrincipal,
    engine: EngineDep,
    store_id: OptionalStoreIdQuery = None,
) -> dict:  # type: ignore[type-arg]
    """Transactions, refunds, voids, units, net revenue and average basket (integer cents) since the start
    of each store's business day. Managers see their stores only; ``store_id`` narrows to one."""
    if store_id is not None:
        principal.require_store(store_id)
        scope: frozenset[str] | None = frozenset({store_id})
    else:
        scope = principal.stores
    return await run_in_threadpool(sales_today, engine, scope)
