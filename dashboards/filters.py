"""The sidebar filters every page shares: store, category and period.

The widgets are drawn by the entry point (``app.py``) on every run, before the page, so their values live in
``st.session_state`` under the keys below and survive switching pages. Pages read them with
:func:`current`; they never draw their own copy.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from chainsync.serving import Snapshot
from dashboards import data

STORE_KEY = "store_filter"
CATEGORY_KEY = "category_filter"
PERIOD_KEY = "period_filter"

ALL_STORES = "All stores"
ALL_CATEGORIES = "All categories"
# Period label -> days back from the snapshot's latest day (None: all history).
PERIODS: dict[str, int | None] = {
    "Last 7 days": 7,
    "Last 28 days": 28,
    "Last 90 days": 90,
    "Last 365 days": 365,
    "All history": None,
}
DEFAULT_PERIOD = "Last 90 days"


@dataclass(frozen=True)
class Filters:
    """What the analyst chose: ``None`` means "all"."""

    store_id: str | None = None
    category: str | None = None
    days: int | None = 90

    @property
    def scope(self) -> str:
        return " · ".join(
            [
                self.store_id or ALL_STORES,
                self.category or ALL_CATEGORIES,
                f"last {self.days} days" if self.days else "all history",
            ]
        )


def sidebar(snap: Snapshot | None) -> None:
    """Draw the shared filters in the sidebar (choices from the snapshot's dimensions)."""
    stores = data.store_ids(snap) if snap is not None else []
    categories = data.categories(snap) if snap is not None else []
    with st.sidebar:
        st.header("Filters")
        store_choices = [ALL_STORES, *stores]
        if st.session_state.get(STORE_KEY) not in store_choices:
            st.session_state[STORE_KEY] = ALL_STORES
        st.selectbox("Store", store_choices, key=STORE_KEY, format_func=_store_label(snap))
        category_choices = [ALL_CATEGORIES, *categories]
        if st.session_state.get(CATEGORY_KEY) not in category_choices:
            st.session_state[CATEGORY_KEY] = ALL_CATEGORIES
        st.selectbox("Category", category_choices, key=CATEGORY_KEY)
        if st.session_state.get(PERIOD_KEY) not in PERIODS:
            st.session_state[PERIOD_KEY] = DEFAULT_PERIOD
        st.selectbox("Period", list(PERIODS), key=PERIOD_KEY)
        if snap is not None:
            st.caption(f"Snapshot {snap.version}")


def _store_label(snap: Snapshot | None):  # type: ignore[no-untyped-def]
    names = data.store_names(snap) if snap is not None else {}

    def label(store_id: str) -> str:
        name = names.get(store_id)
        return f"{store_id} — {name}" if name else store_id

    return label


def current() -> Filters:
    """The filters in force (defaults before the sidebar has been drawn)."""
    store = st.session_state.get(STORE_KEY, ALL_STORES)
    category = st.session_state.get(CATEGORY_KEY, ALL_CATEGORIES)
    period = st.session_state.get(PERIOD_KEY, DEFAULT_PERIOD)
    return Filters(
        store_id=None if store == ALL_STORES else store,
        category=None if category == ALL_CATEGORIES else category,
        days=PERIODS.get(period, PERIODS[DEFAULT_PERIOD]),
    )
