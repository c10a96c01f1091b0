"""Security: threat level, riskiest IPs and users, events, blocks in force."""

from __future__ import annotations

import polars as pl

from chainsync.serving import Snapshot, publish_snapshot
from chainsync.settings import Settings
from dashboards import data
from dashboards.auth import Session
from tests.dashboards.snapshot import access_scores, metrics, open_page


def test_threat_and_riskiest_sources(published: Snapshot, admin: Session) -> None:
    at = open_page("security", admin)
    shown = metrics(at)
    assert shown["Threat level"] == "ELEVATED"
    assert shown["Security events"] == "16"
    assert shown["Failed"] == "12"
    assert shown["Distinct source IPs"] == "2"
    ips = at.dataframe[0].value
    assert ips["source_ip"].tolist() == ["203.0.113.7", "198.51.100.2"]
    assert ips["failures"].tolist() == [9, 3]
    assert ips["distinct_users"].tolist()[0] == 3  # credential stuffing shape
    users = at.dataframe[1].value
    assert sorted(zip(users["username"], users["failures"], strict=True)) == [
        ("alice", 4),
        ("bob", 4),
        ("carol", 4),
    ]


def test_period_filter_narrows_events(published: Snapshot, admin: Session) -> None:
    at = open_page("security", admin, period_filter="Last 7 days")
    assert metrics(at)["Security events"] == "16"  # latest day and three days before
    at = open_page("security", admin, store_filter="S002")
    assert metrics(at)["Security events"] == "0"


def test_ip_risk_and_blocks(
    dashboard_settings: Settings, tables: dict[str, pl.DataFrame], admin: Session
) -> None:
    tables["fct_ip_risk"] = pl.DataFrame(
        {
            "source_ip": ["203.0.113.7", "198.51.100.2", "192.0.2.1"],
            "risk_score": [12.5, 4.0, 7.0],
            "distinct_usernames_failed": [9, 1, 2],
            "is_credential_stuffing": [True, False, False],
            "risk_level": ["critical", "elevated", "high"],
        }
    )
    publish_snapshot(dashboard_settings.serving, tables)
    at = open_page("security", admin)
    risk = at.dataframe[0].value
    assert risk["source_ip"].tolist() == ["203.0.113.7", "192.0.2.1", "198.51.100.2"]
    blocks = at.dataframe[2].value
    assert blocks["source_ip"].tolist() == ["203.0.113.7"]


def test_unusual_data_access_is_listed_for_admins(
    dashboard_settings: Settings, tables: dict[str, pl.DataFrame], admin: Session
) -> None:
    tables["access_anomalies"] = access_scores()
    publish_snapshot(dashboard_settings.serving, tables)
    at = open_page("security", admin)
    assert "Unusual data access" in [h.value for h in at.subheader]
    access = next(d.value for d in at.dataframe if "principal" in d.value.columns)
    assert access["principal"].tolist() == ["mallory"]  # mona's ordinary day is not listed
    flagged = access.iloc[0]
    assert (flagged["stores read"], flagged["usual stores"], flagged["never read before"]) == (20, 2.0, 18)
    assert flagged["off hours %"] == 100 and "distinct_stores" in flagged["what stood out"]
    assert "download_unusual_access" in [b.key for b in at.get("download_button")]
    # A store chosen in the filter keeps the principals that read it (mallory never read S002).
    assert not any(
        "principal" in d.value.columns for d in open_page("security", admin, store_filter="S002").dataframe
    )
    # Managers get neither the page (not in their navigation) nor the table, whatever its columns.
    view = data.snapshot(("S001",))
    assert view is not None and not data.has(view, "access_anomalies")
    assert data.table(view, "access_anomalies").is_empty()
