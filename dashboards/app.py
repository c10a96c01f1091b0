"""Streamlit entry point: navigation only; each page lives in `dashboards/pages/`."""

from __future__ import annotations

import sys
from pathlib import Path

# `streamlit run dashboards/app.py` puts dashboards/ on sys.path, not the project root.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="ChainSync Analytics", layout="wide")

PAGES = Path(__file__).resolve().parent / "pages"
navigation = st.navigation(
    {
        "Sales": [
            st.Page(
                PAGES / "forecast.py", title="Sales and forecast", icon=":material/trending_up:", default=True
            )
        ],
    }
)
navigation.run()
