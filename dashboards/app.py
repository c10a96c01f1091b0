"""Streamlit entry point: navigation and the shared sidebar filters; pages live in `dashboards/views/`."""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboards/app.py` puts dashboards/ on sys.path, not the project root.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboards import data, filters  # noqa: E402

st.set_page_config(page_title="ChainSync Analytics", page_icon=":material/storefront:", layout="wide")

VIEWS = Path(__file__).resolve().parent / "views"


def page(file: str, title: str, icon: str, **kwargs: object) -> st.Page:
    return st.Page(VIEWS / file, title=title, icon=icon, **kwargs)  # type: ignore[arg-type]


navigation = st.navigation(
    {
        "Today": [page("overview.py", "Overview", ":material/dashboard:", default=True)],
        "Analytics": [
            page("forecast.py", "Sales and forecast", ":material/trending_up:"),
            page("anomalies.py", "Anomalies", ":material/warning:"),
            page("inventory.py", "Inventory", ":material/inventory_2:"),
            page("insights.py", "Insights", ":material/lightbulb:"),
        ],
        "Operations": [
            page("security.py", "Security", ":material/shield:"),
            page("sync.py", "Sync", ":material/sync:"),
            page("system.py", "System", ":material/monitor_heart:"),
        ],
    }
)
# Drawn by the entry point on every run, before the page: the filter values persist across pages.
filters.sidebar(data.snapshot())
navigation.run()
