"""The sales anomaly method (chainsync/anomalies/sales.py) and `chainsync detect` on small weekly and daily
panels with planted spikes, drops, holiday weeks and shared shocks."""

from __future__ import annotations

import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from chainsync.anomalies import DETECT_COLUMNS, DetectConfig, detect_panel, score_panel, with_id_columns
from tools.cli import app

START = date(2010, 2, 5)  # a Friday: W-FRI periods
WEEKS = 143


def _weekly(stores: int = 4, depts: int = 3, seed: int = 0) -> pl.DataFrame:
    """Store x Dept weekly sales: a level per series, a yearly wave, 5 % noise, and every Thanksgiving
    week (the one holding the fourth Thursday of November) at twice the level in every series."""
    rng = np.random.default_rng(seed)
    rows = []
    for store in range(1, stores + 1):
        for dept in range(1, depts + 1):
            level = 5000.0 * dept * (1 + 0.1 * store)
            for w in range(WEEKS):
                day = START + timedelta(weeks=w)
                wave = 1 + 0.2 * np.sin(2 * np.pi * w / 52)
                thanksgiving = day.month == 11 and day.weekday() == 4 and 23 <= day.day <= 29  # its Friday
                y = level * wave * (2.0 if thanksgiving else 1.0) * (1 + rng.normal(0, 0.05))
                rows.append({"unique_id": f"{store}_{dept}", "ds": day, "y": y})
    return with_id_columns(pl.DataFrame(rows), ["Store", "Dept"])


def _set(panel: pl.DataFrame, uid: str, day: date, factor: float) -> pl.DataFrame:
    hit = (pl.col("unique_id") == uid) & (pl.col("ds") == day)
    return panel.with_columns(pl.when(hit).then(pl.col("y") * factor).otherwise(pl.col("y")).alias("y"))


def _flags(panel: pl.DataFrame, **kwargs: object) -> set[tuple[str, date]]:
    flags = detect_panel(panel, freq="W-FRI", peer_columns=("Store", "Dept"), **kwargs)  # type: ignore[arg-type]
    return {(r["unique_id"], r["ds"].date()) for r in flags.iter_rows(named=True)}


def test_a_clean_seasonal_panel_with_holiday_weeks_has_no_flags() -> None:
    assert _flags(_weekly()) == set()


def test_spikes_and_drops_are_flagged_on_their_series_and_week_only() -> None:
    spike, drop = ("2_3", START + timedelta(weeks=60)), ("3_3", START + timedelta(weeks=100))
    panel = _set(_set(_weekly(), *spike, 2.0), *drop, 0.5)
    scored = score_panel(panel, freq="W-FRI", peer_columns=("Store", "Dept"))
    flagged = scored.filter("is_anomaly")
    assert {(r["unique_id"], r["ds"].date()) for r in flagged.iter_rows(named=True)} == {spike, drop}
    up = flagged.filter(pl.col("direction") == "up").row(0, named=True)
    down = flagged.filter(pl.col("direction") == "down").row(0, named=True)
    # The expected value is the week without the change: the spike doubled it, the drop halved it.
    assert up["expected"] == pytest.approx(up["y"] / 2.0, rel=0.2)
    assert down["expected"] == pytest.approx(down["y"] * 2.0, rel=0.2)
    assert up["y"] > up["hi"] and down["y"] < down["lo"]
    # A year after the spike the sibling is the spike itself; 0 still explains the ordinary week.
    year_later = scored.filter(
        (pl.col("unique_id") == spike[0])
        & (pl.col("ds") == datetime.combine(spike[1], datetime.min.time()) + timedelta(weeks=52))
    ).row(0, named=True)
    assert not year_later["is_anomaly"]


def test_a_spike_on_a_holiday_week_is_still_flagged() -> None:
    thanksgiving = date(2011, 11, 25)
    panel = _set(_weekly(), "1_2", thanksgiving, 2.0)
    assert _flags(panel) == {("1_2", thanksgiving)}


def test_shocks_shared_by_a_store_or_a_department_are_not_anomalies() -> None:
    week = START + timedelta(weeks=70)
    panel = _weekly(stores=6, depts=6)
    for dept in range(1, 7):  # store 2 closed half the week: every department down
        panel = _set(panel, f"2_{dept}", week, 0.5)
    for store in range(1, 7):  # a promotion of department 5 in every store
        panel = _set(panel, f"{store}_5", week + timedelta(weeks=10), 1.8)
    assert _flags(panel) == set()


def test_small_changes_and_short_series_are_not_flagged() -> None:
    panel = _set(_weekly(), "1_1", START + timedelta(weeks=50), 1.1)  # +10 %: below min_effect
    short = pl.DataFrame(
        {
            "unique_id": "9_9",
            "ds": [START + timedelta(weeks=w) for w in range(6)],
            "y": [1.0, 0, -5, 0, 900, 0],
        }
    ).with_columns(Store=pl.lit("9"), Dept=pl.lit("9"))
    panel = pl.concat([panel, short], how="vertical_relaxed")
    scored = score_panel(panel, freq="W-FRI", peer_columns=("Store", "Dept"))
    assert "9_9" not in set(scored["unique_id"])  # fewer than min_history values: not scored
    assert not scored["is_anomaly"].any()


def test_since_and_threshold_change_the_flags() -> None:
    early, late = START + timedelta(weeks=20), START + timedelta(weeks=120)
    panel = _set(_set(_weekly(), "1_1", early, 3.0), "2_2", late, 3.0)
    assert _flags(panel, since=late) == {("2_2", late)}
    assert _flags(panel, config=DetectConfig(z=1000.0)) == set()


def test_a_period_off_the_grid_is_a_clear_error() -> None:
    panel = pl.DataFrame(
        {"unique_id": ["a", "a"], "ds": [date(2010, 2, 5), date(2010, 2, 11)], "y": [1.0, 2.0]}
    )
    with pytest.raises(ValueError, match="ds: 1 period"):
        score_panel(panel, freq="W-FRI")


def test_daily_panel_with_weekday_pattern_and_a_chain_wide_holiday() -> None:
    rng = np.random.default_rng(1)
    days = 400
    first = date(2024, 1, 1)
    rows = []
    for store in range(8):
        for d in range(days):
            day = first + timedelta(days=d)
            weekday = 1.6 if day.weekday() == 5 else 1.0
            holiday = 3.0 if (day.month, day.day) == (11, 29) else 1.0  # Black Friday 2024, every store
            rows.append(
                {
                    "unique_id": f"s{store}",
                    "ds": day,
                    "y": 1e5 * weekday * holiday * (1 + rng.normal(0, 0.04)),
                }
            )
    panel = pl.DataFrame(rows)
    spike = date(2024, 6, 12)
    panel = _set(panel, "s3", spike, 1.6)
    flags = detect_panel(panel, freq="D")
    assert list(flags.columns) == DETECT_COLUMNS
    assert {(r["unique_id"], r["ds"].date()) for r in flags.iter_rows(named=True)} == {("s3", spike)}


def test_cli_detect_writes_the_flags_of_a_zipped_panel(tmp_path: Path) -> None:
    spike = START + timedelta(weeks=90)
    panel = _set(_weekly(), "3_3", spike, 0.4)
    csv = tmp_path / "train.csv"
    panel.select(
        pl.col("Store").cast(pl.Int64),
        pl.col("Dept").cast(pl.Int64),
        Date=pl.col("ds"),
        Weekly_Sales=pl.col("y"),
    ).write_csv(csv)
    archive = tmp_path / "train.csv.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(csv, "train.csv")
    out = tmp_path / "flags.csv"
    args = [
        "detect", str(archive), "--id-cols", "Store,Dept", "--date-col", "Date",
        "--target", "Weekly_Sales", "--freq", "W-FRI", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    flags = pl.read_csv(out, try_parse_dates=True)
    assert flags.columns == DETECT_COLUMNS
    assert flags.select("unique_id", "ds", "direction").rows() == [("3_3", spike, "down")]
    assert flags["lo"][0] <= flags["expected"][0] <= flags["hi"][0]

    bad = CliRunner().invoke(app, [*args[:-2], "--out", str(out), "--since", "yesterday"])
    assert bad.exit_code == 2 and "--since" in bad.output
    missing = CliRunner().invoke(app, [*args[:7], "Nope", *args[8:]])
    assert missing.exit_code == 2 and "Nope" in missing.output


def _regional(seed: int = 3, weeks: int = WEEKS) -> tuple[pl.DataFrame, list[str]]:
    """Sixty stores of one department: stores 1-15 share a regional pattern (promotions and weather, ±10 %
    a week) with 3 % noise of their own; the others move on their own by 5 %."""
    rng = np.random.default_rng(seed)
    region = rng.normal(0, 0.10, weeks)
    rows = []
    for store in range(1, 61):
        own = rng.normal(0, 0.03, weeks) + region if store <= 15 else rng.normal(0, 0.05, weeks)
        for w in range(weeks):
            rows.append(
                {"unique_id": f"{store}_1", "ds": START + timedelta(weeks=w), "y": 10000.0 * (1 + own[w])}
            )
    return with_id_columns(pl.DataFrame(rows), ["Store", "Dept"]), [f"{s}_1" for s in range(1, 16)]


def test_a_shock_shared_by_the_series_that_move_together_is_explained_by_them() -> None:
    panel, region = _regional()
    week = START + timedelta(weeks=80)
    for uid in region:  # a hurricane week in the region: every store of it up 60 %
        panel = _set(panel, uid, week, 1.6)
    panel = _set(panel, "35_1", week + timedelta(weeks=20), 1.6)  # one store alone: an anomaly
    flags = _flags(panel)
    assert ("35_1", week + timedelta(weeks=20)) in flags
    assert not {f for f in flags if f[1] == week}
    # Without the neighbours the region's week is not the panel's median shock: it is flagged.
    alone = _flags(panel, config=DetectConfig(neighbours=0))
    assert {f for f in alone if f[1] == week}


def test_a_series_that_often_spikes_is_still_judged_by_its_drops() -> None:
    rng = np.random.default_rng(4)
    rows = []
    for store in range(1, 9):
        for w in range(WEEKS):
            promo = 1.45 if store == 1 and w % 6 == 3 else 1.0  # store 1: a promotion every six weeks
            y = 20000.0 * promo * (1 + rng.normal(0, 0.03))
            rows.append({"unique_id": f"{store}_1", "ds": START + timedelta(weeks=w), "y": y})
    panel = pl.DataFrame(rows)
    drop, spike = START + timedelta(weeks=73), START + timedelta(weeks=103)  # between promotions
    panel = _set(_set(panel, "1_1", drop, 0.55), "1_1", spike, 1.45)  # -45 %; +45 % off the promotion rhythm
    config = DetectConfig(min_amount_share=0.0)  # the scale alone decides
    scored = score_panel(panel, freq="W-FRI", config=config).filter(pl.col("unique_id") == "1_1")
    flagged = {r["ds"].date() for r in scored.filter("is_anomaly").iter_rows(named=True)}
    assert drop in flagged and spike not in flagged
    # The bounds are wider above (its promotions) than below.
    ordinary = scored.filter(
        pl.col("ds") == datetime.combine(START + timedelta(weeks=50), datetime.min.time())
    )
    row = ordinary.row(0, named=True)
    assert row["hi"] - row["expected"] > 1.5 * (row["expected"] - row["lo"])


def test_sales_booked_a_week_late_are_no_one_period_anomaly() -> None:
    # Store 2's department 3 books 60 % of one week's sales in the next: a spike beside a drop, the two
    # weeks together as usual. Neither week is an isolated surprise; a lone spike elsewhere still is.
    late, lone = START + timedelta(weeks=60), ("4_3", START + timedelta(weeks=90))
    panel = _set(_set(_weekly(), "2_3", late, 0.4), "2_3", late + timedelta(weeks=1), 1.6)
    panel = _set(panel, *lone, 2.0)
    assert _flags(panel) == {lone}
    shifted = {("2_3", late), ("2_3", late + timedelta(weeks=1))}
    assert shifted <= _flags(panel, config=DetectConfig(isolation=0.0))


def test_a_jump_the_series_has_made_before_is_no_news_but_a_larger_one_is() -> None:
    # Department 3 of store 3 doubles in two weeks a year and a half apart (not the same week of the year):
    # each has the other as precedent. A tripling in department 3 of store 4, whose largest rise elsewhere is
    # a 40 % week, is news.
    first, second = START + timedelta(weeks=30), START + timedelta(weeks=110)
    panel = _set(_set(_weekly(), "3_3", first, 2.0), "3_3", second, 2.0)
    earlier, big = START + timedelta(weeks=40), START + timedelta(weeks=100)
    panel = _set(_set(panel, "4_3", earlier, 1.4), "4_3", big, 3.0)
    flags = _flags(panel)
    assert ("4_3", big) in flags
    assert not {f for f in flags if f[0] == "3_3"}
    assert {("3_3", first), ("3_3", second)} <= _flags(panel, config=DetectConfig(precedent=0.0))


def test_a_storm_at_three_stores_that_move_together_is_their_shared_event() -> None:
    # Three stores of the region up 60 % in one week: too few to move the median of their 20 neighbour
    # series, but each has two neighbours as unusual that week. One store of the region alone is an anomaly.
    panel, region = _regional()
    week, lone = START + timedelta(weeks=80), ("9_1", START + timedelta(weeks=100))
    for uid in region[:3]:
        panel = _set(panel, uid, week, 1.6)
    panel = _set(panel, *lone, 1.6)
    flags = _flags(panel)
    assert lone in flags
    assert not {f for f in flags if f[1] == week}
    apart = _flags(panel, config=DetectConfig(company=0))
    assert {(uid, week) for uid in region[:3]} <= apart
