"""Small building blocks the pages share: the snapshot guard, tables with a CSV download, notices."""

from __future__ import annotations

import polars as pl
import streamlit as st

from chainsync.serving import Snapshot
from dashboards import data

MAX_ROWS_SHOWN = 2000  # the CSV download always holds every row


def require_snapshot() -> Snapshot:
    """The current snapshot, or an explanation and a stop."""
    snap = data.snapshot()
    if snap is None:
        st.info("No serving snapshot yet. Run `chainsync pipeline run` (or `make demo`) to publish one.")
        st.stop()
    return snap  # type: ignore[return-value]


def missing(snap: Snapshot, table: str, what: str) -> bool:
    """True (after a clear notice) when the snapshot lacks ``table``."""
    if data.has(snap, table):
        return False
    st.info(
        f"{what}: the current snapshot has no `{table}` table yet (published by a pipeline run that "
        "includes it).",
        icon=":material/hourglass_empty:",
    )
    return True


def table(frame: pl.DataFrame, name: str, *, height: int | None = None) -> None:
    """A table (first rows when large) with a CSV download of all of it."""
    if frame.is_empty():
        st.caption("No rows for this selection.")
        return
    shown = frame.head(MAX_ROWS_SHOWN)
    st.dataframe(shown, width="stretch", hide_index=True, height=height or "auto")
    if frame.height > MAX_ROWS_SHOWN:
        st.caption(f"Showing {MAX_ROWS_SHOWN:,} of {frame.height:,} rows; the CSV has them all.")
    st.download_button(
        f"Download {name.replace('_', ' ')} (CSV)",
        frame.write_csv(),
        file_name=f"{name}.csv",
        mime="text/csv",
        key=f"download_{name}",
        on_click="ignore",
    )


def footer(snap: Snapshot) -> None:
    st.caption(f"Snapshot {snap.version}, published {snap.created_at:%Y-%m-%d %H:%M} UTC")


def money(cents: float | int | None) -> str:
    return "—" if cents is None else f"{cents / 100:,.2f}"
