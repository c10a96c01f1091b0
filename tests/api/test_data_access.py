"""Unusual data access: the trail the detector learns from (store-data reads recorded with their store)
and GET /api/ai/anomalies?type=access serving the detector's scores from a real snapshot (admins only)."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
from sqlalchemy import select

from chainsync.data_access import store_of
from chainsync.ops_store.tables import security_audit
from chainsync.serving import publish_snapshot
from pipelines.defs.access.detector import OUTPUT_COLUMNS, score_access
from tests.api.conftest import bearer

ANOMALIES = "/api/ai/anomalies"


def _data_access(engine) -> list[dict]:  # type: ignore[no-untyped-def]
    stmt = (
        select(security_audit).where(security_audit.c.action == "data_access").order_by(security_audit.c.seq)
    )
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def test_store_data_reads_are_recorded_with_their_store(
    client, tokens, device_keys, snapshot, engine
) -> None:
    manager = bearer(tokens["manager"])
    assert client.get("/api/ai/forecast", params={"store_id": "S001"}, headers=manager).status_code == 200
    assert client.get("/api/ai/anomalies", params={"store_id": "S002"}, headers=manager).status_code == 200
    assert client.get("/api/ai/anomalies", headers=manager).status_code == 200  # all my stores: no one store
    assert client.get("/api/ai/forecast", params={"store_id": "S003"}, headers=manager).status_code == 403
    assert client.get("/api/sync/download", headers={"X-API-Key": device_keys["S002"]}).status_code == 200
    rows = _data_access(engine)
    seen = [(r["actor"], r["route"], store_of(r["detail"])) for r in rows]
    assert seen == [
        ("mona", "/api/ai/forecast", "S001"),
        ("mona", "/api/ai/anomalies", "S002"),
        ("mona", "/api/ai/anomalies", None),
        ("device:S002/POS-01", "/api/sync/download", "S002"),
    ]  # the refused read of S003 is an authorization denial, not a data access
    assert rows[0]["role"] == "manager" and rows[0]["detail"] == "GET /api/ai/forecast store=S001"


def _access_scores() -> pl.DataFrame:
    """The detector's own output for two principal-days: mallory's 3 am sweep of 20 stores (flagged) and
    an ordinary day of mona's."""
    common = {
        "role": "manager",
        "principal_kind": "user",
        "distinct_routes": 3,
        "source_ips": 1,
        "baseline_days": 14,
        "baseline_mad_log_reads": 0.2,
        "baseline_mad_stores": 0.0,
        "baseline_new_stores": 0.0,
        "baseline_mad_new_stores": 0.0,
        "baseline_mad_off_hours": 0.0,
        "baseline_off_hours": 0.0,
        "baseline_stores": 2.0,
        "baseline_log_reads": 2.2,
    }
    days = [
        {
            **common,
            "principal": "mallory",
            "access_date": date(2026, 3, 15),
            "reads": 60,
            "log_reads": 4.11,
            "distinct_stores": 20,
            "new_stores": 18,
            "stores": ",".join(f"S{i:03d}" for i in range(1, 21)),
            "off_hours_reads": 60,
            "off_hours_share": 1.0,
            "first_at": datetime(2026, 3, 15, 3, 0),
            "last_at": datetime(2026, 3, 15, 3, 40),
        },
        {
            **common,
            "principal": "mona",
            "access_date": date(2026, 3, 15),
            "reads": 9,
            "log_reads": 2.3,
            "distinct_stores": 2,
            "new_stores": 0,
            "stores": "S001,S002",
            "off_hours_reads": 0,
            "off_hours_share": 0.0,
            "first_at": datetime(2026, 3, 15, 9, 0),
            "last_at": datetime(2026, 3, 15, 17, 0),
        },
    ]
    return score_access(pl.DataFrame(days), z_threshold=6.0)


def test_access_anomalies_are_for_admins(client, tokens, settings) -> None:
    scores = _access_scores()
    assert scores.columns == list(OUTPUT_COLUMNS)
    publish_snapshot(settings.serving, {"access_anomalies": scores})
    for role in ("manager", "cashier"):
        refused = client.get(ANOMALIES, params={"type": "access"}, headers=bearer(tokens[role]))
        assert refused.status_code == 403, role
    answer = client.get(ANOMALIES, params={"type": "access"}, headers=bearer(tokens["admin"]))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["type"] == "access" and body["count"] == 1  # mona's ordinary day is not listed
    (flagged,) = body["anomalies"]
    assert (flagged["principal"], flagged["day"]) == ("mallory", "2026-03-15")
    # 60 reads against about 8 a day, 20 stores against 2, all at night: every signal stands out.
    assert set(flagged["drivers"]) == {"reads", "distinct_stores", "new_stores", "off_hours_share"}
    assert flagged["distinct_stores"] == 20 and flagged["expected_stores"] == 2.0
    assert flagged["off_hours_share"] == 1.0 and flagged["severity"] in ("high", "critical")
    assert flagged["max_z"] == flagged["anomaly_score"] >= 6.0
    none_since = client.get(
        ANOMALIES, params={"type": "access", "since": "2026-03-16"}, headers=bearer(tokens["admin"])
    )
    assert none_since.json()["count"] == 0
    # Principals belong to no store: a store filter is refused, not ignored.
    store = client.get(
        ANOMALIES, params={"type": "access", "store_id": "S001"}, headers=bearer(tokens["admin"])
    )
    assert store.status_code == 422 and "chain-wide" in store.json()["detail"]


def test_a_snapshot_without_access_scores_is_503(client, tokens, snapshot) -> None:
    answer = client.get(ANOMALIES, params={"type": "access"}, headers=bearer(tokens["admin"]))
    assert answer.status_code == 503 and "access_anomalies" in answer.json()["detail"]
