"""Security figures (administrators): the chain's threat level (from fct_ip_risk's address levels, else
the day's failures, with chainsync.risk's levels), events, the riskiest sources, flagged addresses and
unusual data access.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from chainsync import snapshot_contract as contract
from chainsync.risk import daily_failure_level, level_rank, worst_level
from chainsync.serving import Snapshot
from dashboards.data import declared, scoped, table
from dashboards.domain.anomalies import SEVERITY_ORDER


def threat(snap: Snapshot) -> dict[str, Any]:
    """Threat level from security data: fct_ip_risk's highest risk when present, else the failure count on
    the latest day of fct_security_events (:func:`chainsync.risk.daily_failure_level`), raised by the security
    anomaly model."""
    risk = table(snap, contract.FCT_IP_RISK.name)
    score_col = declared(risk, contract.FCT_IP_RISK.score_column)
    level_col = declared(risk, "risk_level")
    if level_col and risk.height:
        return {"level": worst_level(risk[level_col].to_list()), "basis": "fct_ip_risk threat level"}
    events = table(snap, "fct_security_events")
    if events.is_empty():
        return {"level": None, "basis": "no security events in the snapshot"}
    last = events["event_date"].max()
    day = events.filter(pl.col("event_date") == last)
    failures = int(day["is_failure"].sum())
    level = daily_failure_level(failures)
    basis = f"{failures} failed security events on {last}"
    # The security anomaly model can raise it: a critical flag that day is critical, high is high.
    sec = table(snap, "security_anomalies")
    if {"is_anomaly", "severity", "event_date"} <= set(sec.columns):
        worst = sec.filter(pl.col("is_anomaly") & (pl.col("event_date") == last))["severity"].to_list()
        raised = [lvl for lvl in ("critical", "high") if lvl in worst]
        if raised and level_rank(raised[0]) > level_rank(level):
            level = raised[0]
            basis += f"; {worst.count(raised[0])} {raised[0]} security anomalies that day"
    if score_col is not None and risk.height:
        basis += f"; highest IP risk {float(risk[score_col].max()):.2f}"  # type: ignore[arg-type]
    return {"level": level, "basis": basis, "failures": failures, "day": last}


def security_events(snap: Snapshot, store_id: str | None, days: int | None) -> pl.DataFrame:
    return scoped(
        snap, table(snap, "fct_security_events"), store_id=store_id, date_col="event_date", days=days
    )


def risky(events: pl.DataFrame, by: str, limit: int = 15) -> pl.DataFrame:
    """Sources ranked by failures: failed events, distinct users tried (or IPs used), last seen."""
    if events.is_empty() or by not in events.columns:
        return pl.DataFrame()
    other = "username" if by == "source_ip" else "source_ip"
    return (
        events.filter(pl.col(by).is_not_null())
        .group_by(by)
        .agg(
            pl.col("is_failure").sum().alias("failures"),
            pl.len().alias("events"),
            pl.col(other).n_unique().alias(f"distinct_{'users' if other == 'username' else 'ips'}"),
            pl.col("security_kind").unique().sort().str.join(", ").alias("kinds"),
            pl.col("occurred_at").max().alias("last_seen"),
        )
        .filter(pl.col("failures") > 0)
        .sort(["failures", "events"], descending=True)
        .head(limit)
    )


def ip_risk(snap: Snapshot) -> pl.DataFrame:
    risk = table(snap, contract.FCT_IP_RISK.name)
    col = declared(risk, contract.FCT_IP_RISK.score_column)
    return risk.sort(col, descending=True, nulls_last=True) if col else risk


def blocks_in_force(risk: pl.DataFrame) -> pl.DataFrame:
    """The addresses of the last snapshot's ``fct_ip_risk`` at the block score (``risk_level`` critical):
    the blocks as the warehouse sees them. The API decides and expires the blocks themselves (the live
    list needs an admin login); this is the fallback when it cannot be reached."""
    if risk.is_empty() or "risk_level" not in risk.columns:
        return risk.head(0)
    return risk.filter(pl.col("risk_level") == "critical")


def flagged_ips(snap: Snapshot, days: int | None) -> pl.DataFrame:
    """IPs the security anomaly model flagged in the period: days flagged, worst severity, highest score,
    failures and users tried, the drivers, last seen; riskiest first."""
    sec = scoped(snap, table(snap, "security_anomalies"), date_col="event_date", days=days)
    if sec.is_empty() or "is_anomaly" not in sec.columns:
        return pl.DataFrame()
    order = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    flagged = sec.filter(pl.col("is_anomaly")).with_columns(
        rank=pl.col("severity").replace_strict(order, default=0, return_dtype=pl.Int8)
    )
    users = declared(flagged, "failed_users")
    return (
        flagged.group_by("source_ip")
        .agg(
            pl.len().alias("days_flagged"),
            pl.col("severity").sort_by("rank").last().alias("worst_severity"),
            pl.col("anomaly_score").max().round(2).alias("max_score"),
            pl.col("failures").sum().alias("failures") if "failures" in flagged.columns else pl.lit(None),
            (pl.col(users).max() if users else pl.lit(None)).alias("most_users_tried"),
            pl.col("drivers").drop_nulls().unique().sort().str.join(" | ").alias("drivers"),
            pl.col(declared(flagged, "last_seen") or "event_date").max().alias("last_seen"),
            pl.col("rank").max().alias("_rank"),
        )
        .sort(["_rank", "max_score"], descending=True)
        .drop("_rank")
    )


def unusual_access(snap: Snapshot, store_id: str | None, days: int | None) -> pl.DataFrame:
    """Users and terminals whose data access departed from their own history (``access_anomalies``), in
    the period (and, with a store chosen, those that read it): who, which day, what stood out, the day's
    figures beside the principal's usual ones; most severe first."""
    scores = scoped(snap, table(snap, "access_anomalies"), date_col="access_date", days=days)
    if scores.is_empty() or "is_anomaly" not in scores.columns:
        return pl.DataFrame()
    flagged = scores.filter(pl.col("is_anomaly"))
    if store_id:
        flagged = flagged.filter(pl.col("stores").fill_null("").str.split(",").list.contains(store_id))
    order = {s: i for i, s in enumerate(SEVERITY_ORDER)}
    return (
        flagged.with_columns(_rank=pl.col("severity").replace_strict(order, default=0, return_dtype=pl.Int8))
        .sort(["_rank", "max_z", "access_date"], descending=True)
        .select(
            "principal",
            pl.col("principal_kind").alias("kind"),
            "role",
            pl.col("access_date").alias("day"),
            "severity",
            pl.col("drivers").str.replace_all(",", ", ").alias("what stood out"),
            "reads",
            pl.col("expected_reads").round(1).alias("usual reads"),
            pl.col("distinct_stores").alias("stores read"),
            pl.col("expected_stores").alias("usual stores"),
            pl.col("new_stores").alias("never read before"),
            (pl.col("off_hours_share") * 100).round(0).alias("off hours %"),
            (pl.col("expected_off_hours_share") * 100).round(0).alias("usual off hours %"),
            "stores",
            pl.col("max_z").round(1).alias("score"),
        )
    )
