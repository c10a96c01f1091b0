"""Streamlit entry point: the login gate, navigation by role and the shared sidebar; pages live in
`dashboards/views/`.

Logged out, every page address shows the login page (so a deep link survives the login). Logged in,
administrators get every page; managers get the analytics pages, and the addresses of the admin pages
answer with a refusal that runs none of the page's code.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

# `streamlit run dashboards/app.py` puts dashboards/ on sys.path, not the project root.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboards import auth, data, filters, login, ui  # noqa: E402

st.set_page_config(page_title="ChainSync Analytics", page_icon=":material/storefront:", layout="wide")

VIEWS = Path(__file__).resolve().parent / "views"


@dataclass(frozen=True)
class PageSpec:
    section: str
    file: str
    title: str
    icon: str
    admin_only: bool = False

    @property
    def url_path(self) -> str:
        return Path(self.file).stem


PAGES = (
    PageSpec("Today", "overview.py", "Overview", ":material/dashboard:"),
    PageSpec("Analytics", "forecast.py", "Sales and forecast", ":material/trending_up:"),
    PageSpec("Analytics", "anomalies.py", "Anomalies", ":material/warning:"),
    PageSpec("Analytics", "inventory.py", "Inventory", ":material/inventory_2:"),
    PageSpec("Analytics", "insights.py", "Insights", ":material/lightbulb:"),
    PageSpec("Operations", "security.py", "Security", ":material/shield:", admin_only=True),
    PageSpec("Operations", "sync.py", "Sync", ":material/sync:"),
    PageSpec("Operations", "system.py", "System", ":material/monitor_heart:", admin_only=True),
)
DEFAULT = PAGES[0]


def _login_pages() -> list[st.Page]:
    # The login form at every page's address: the default one is the app's own default page, so after the
    # login the same address opens the page it names.
    return [
        st.Page(login.page, title="Log in", url_path=v.url_path, default=v is DEFAULT, visibility="hidden")
        for v in PAGES
    ]


def _refusal(view: PageSpec) -> st.Page:
    def refused() -> None:
        ui.refused(view.title)

    return st.Page(refused, title=view.title, url_path=view.url_path, visibility="hidden")


def _pages(session: auth.Session) -> dict[str, list[st.Page]]:
    sections: dict[str, list[st.Page]] = {}
    for v in PAGES:
        if v.admin_only and not session.is_admin:
            page = _refusal(v)
        else:
            page = st.Page(VIEWS / v.file, title=v.title, icon=v.icon, default=v is DEFAULT)  # type: ignore[arg-type]
        sections.setdefault(v.section, []).append(page)
    return sections


session = auth.current()
if session is None:
    st.navigation(_login_pages(), position="hidden").run()
else:
    navigation = st.navigation(_pages(session))
    # Drawn by the entry point on every run, before the page: the filter values persist across pages.
    filters.sidebar(data.snapshot(session.stores))
    ui.account(session)
    navigation.run()
