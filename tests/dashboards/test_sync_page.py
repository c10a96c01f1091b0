"""Sync: terminals, lag and clock skew from the snapshot; live status notice when the API is down."""

from __future__ import annotations

from chainsync.serving import Snapshot
from dashboards.auth import Session
from tests.dashboards.snapshot import app, infos, metrics, open_page


def test_terminals_from_the_snapshot(published: Snapshot, admin: Session) -> None:
    at = open_page("sync", admin)
    shown = metrics(at)
    assert shown["Terminals"] == "4"
    assert shown["Sessions"] == "6"
    assert shown["Items rejected"] == "3"
    assert shown["Worst clock skew (s)"] == "80"
    terminals = at.dataframe[0].value
    s002 = terminals[terminals["store_id"] == "S002"].set_index("device_id")
    assert s002.loc["S002-T1", "sessions"] == 2 and s002.loc["S002-T1", "worst_skew_s"] == 80
    assert s002.loc["S002-T2", "clock_skew_s"] == 40
    assert (terminals["max_offline_min"] == 30.0).all()
    assert sum("Live" in i and "not shown" in i for i in infos(at)) == 2


def test_store_filter_persists_from_another_page(published: Snapshot, admin: Session) -> None:
    at = app(admin)  # the default page: Overview
    at.sidebar.selectbox(key="store_filter").set_value("S001").run()
    assert not at.exception
    at.switch_page("views/sync.py").run()
    assert not at.exception
    assert at.session_state["store_filter"] == "S001"
    assert metrics(at)["Terminals"] == "2"
    assert metrics(at)["Items rejected"] == "0"
    at.switch_page("views/security.py").run()
    assert at.session_state["store_filter"] == "S001"
    assert metrics(at)["Security events"] == "16"
