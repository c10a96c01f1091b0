"""Small building blocks the pages share: the snapshot guard (as the logged-in reader may see it), tables
with a CSV download, live sections that refresh themselves, the account box, notices."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import streamlit as st

from chainsync.serving import Snapshot
from chainsync.settings import get_settings
from dashboards import auth, data

MAX_ROWS_SHOWN = 2000  # the CSV download always holds every row


def require_snapshot() -> data.View:
    """The current snapshot as the logged-in reader may see it (a manager: their stores' rows only), or an
    explanation and a stop."""
    session = auth.current()
    if session is None:  # app.py shows the login page instead; a page run on its own stops here
        st.stop()
    snap = data.snapshot(session.stores)  # type: ignore[union-attr]
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


def is_admin() -> bool:
    session = auth.current()
    return session is not None and session.is_admin


def live(section: Callable[[], None]) -> None:
    """Draw ``section`` (figures read from the API) as a fragment that redraws itself every
    ``CHAINSYNC_DASHBOARD_REFRESH_SECONDS`` (0: only with the page). The rest of the page is not rerun."""
    seconds = get_settings().dashboard_refresh_seconds
    st.fragment(section, run_every=seconds or None)()


def require_admin(title: str) -> None:
    """Stop an administrators' page for anyone else (the navigation never offers it to them either)."""
    if not is_admin():
        refused(title)
        st.stop()


def refused(title: str) -> None:
    """What a page for administrators shows anyone else: a refusal, and none of the page."""
    st.title(title)
    st.error(f"The {title} page is for administrators.", icon=":material/block:")


def account(session: auth.Session) -> None:
    """Who is logged in, what they see, and the logout button (sidebar)."""
    with st.sidebar:
        st.divider()
        scope = "every store" if session.stores is None else ", ".join(session.stores) or "no store"
        st.caption(f"Logged in as **{session.username}** ({session.role}) · {scope}")
        if st.button("Log out", key="logout", icon=":material/logout:"):
            auth.logout()
            st.rerun()
