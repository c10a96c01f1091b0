"""Live sales for managers: today so far, per store, from the ops store (the snapshot lags a run behind)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep, ManagerPrincipal
from api.queries.sales import sales_today

router = APIRouter(prefix="/sales", tags=["sales"])


@router.get("/today", summary="Sales so far today, per store (live)")
async def today(
    principal: ManagerPrincipal,
    engine: EngineDep,
    store_id: Annotated[
        str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    ] = None,
) -> dict:  # type: ignore[type-arg]
    """Transactions, refunds, voids, units, net revenue and average basket (integer cents) since the start
    of each store's business day. Managers see their stores only; ``store_id`` narrows to one."""
    if store_id is not None:
        principal.require_store(store_id)
        scope: frozenset[str] | None = frozenset({store_id})
    else:
        scope = principal.stores
    return await run_in_threadpool(sales_today, engine, scope)
