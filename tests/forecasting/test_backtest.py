"""`chainsync backtest` on a small weekly panel CSV (zipped), baselines included; rolling origins and the
no-leakage guarantee."""

from __future__ import annotations

import zipfile
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from tools.backtest import DEFAULT_BASELINES, parse_baselines, run_backtest
from tools.cli import app


def _weekly_panel(tmp_path: Path) -> tuple[Path, list[dict[str, object]], int]:
    rng = np.random.default_rng(3)
    weeks = 120
    rows = []
    for store in (1, 2):
        for dept in (1, 2, 3):
            season = 100 * np.sin(2 * np.pi * np.arange(weeks) / 52) + 1000 * dept
            y = season + rng.normal(0, 20, weeks)
            for w in range(weeks):
                rows.append(
                    {
                        "Store": store,
                        "Dept": dept,
                        "Date": str(date(2010, 2, 5) + timedelta(weeks=w)),
                        "Sales": y[w],
                    }
                )
    csv = tmp_path / "panel.csv"
    pl.DataFrame(rows).write_csv(csv)
    archive = tmp_path / "panel.csv.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(csv, "panel.csv")
    return archive, rows, weeks


def _args(archive: Path, *extra: str) -> list[str]:
    return [
        "backtest",
        str(archive),
        "--id-cols",
        "Store,Dept",
        "--date-col",
        "Date",
        "--target",
        "Sales",
        "--freq",
        "W-FRI",
        "--horizon",
        "8",
        *extra,
    ]


def test_backtest_command_writes_forecasts_and_scores(tmp_path: Path) -> None:
    archive, rows, weeks = _weekly_panel(tmp_path)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(app, _args(archive, "--forecasts-out", str(out)))
    assert result.exit_code == 0, result.output
    for name in ("ChainSync", "SeasonalNaive", "AutoETS", "MASE", "WAPE"):
        assert name in result.output
    written = pl.read_csv(out, try_parse_dates=True)
    assert written.columns == ["unique_id", "ds", "yhat", "lo_80", "hi_80", "lo_95", "hi_95"]
    assert written.height == 6 * 8
    assert set(written["unique_id"]) == {f"{s}_{d}" for s in (1, 2) for d in (1, 2, 3)}
    assert written["ds"].min() == date(2010, 2, 5) + timedelta(weeks=weeks - 8)
    # Smooth yearly pattern: our forecast is close (within 10 % of the level).
    truth = pl.DataFrame(rows).with_columns(
        unique_id=pl.format("{}_{}", "Store", "Dept"), ds=pl.col("Date").str.to_date()
    )
    joined = written.join(truth, on=["unique_id", "ds"])
    assert ((joined["yhat"] - joined["Sales"]).abs() / joined["Sales"]).mean() < 0.1  # type: ignore[operator]


def _methods(output: str) -> list[str]:
    """The method column of the printed score table (rows with every column filled)."""
    return [
        line.split("│")[1].strip()
        for line in output.splitlines()
        if line.count("│") == 7 and "method" not in line and line.split("│")[1].strip()
    ]


def test_parse_baselines() -> None:
    assert parse_baselines("SeasonalNaive,AutoETS") == DEFAULT_BASELINES
    assert parse_baselines(" autotheta, MSTL ,AutoTheta") == ("AutoTheta", "MSTL")
    assert parse_baselines("none") == parse_baselines("") == ()
    with pytest.raises(ValueError, match="unknown baseline 'Prophet'"):
        parse_baselines("SeasonalNaive,Prophet")


def test_backtest_command_runs_the_chosen_baselines(tmp_path: Path) -> None:
    archive, _, _ = _weekly_panel(tmp_path)
    result = CliRunner().invoke(
        app, _args(archive, "--baselines", "SeasonalNaive,AutoTheta", "--holidays", "none")
    )
    assert result.exit_code == 0, result.output
    assert _methods(result.output) == ["ChainSync", "SeasonalNaive", "AutoTheta"]
    header = next(line for line in result.output.splitlines() if "method" in line)
    for column in ("MASE", "WAPE", "80% coverage", "95% coverage", "seconds"):
        assert column in header

    only_ours = CliRunner().invoke(app, _args(archive, "--baselines", "none"))
    assert only_ours.exit_code == 0, only_ours.output
    assert _methods(only_ours.output) == ["ChainSync"]


@pytest.mark.parametrize(
    ("option", "message"),
    [(["--baselines", "AutoETS,Prophet"], "unknown baseline"), (["--holidays", "XX"], "no holiday calendar")],
)
def test_backtest_command_rejects_bad_options(tmp_path: Path, option: list[str], message: str) -> None:
    archive, _, _ = _weekly_panel(tmp_path)
    result = CliRunner().invoke(app, _args(archive, *option))
    assert result.exit_code == 2
    assert message in result.output


def _noisy_weekly_panel(n_series: int = 30, weeks: int = 120) -> pl.DataFrame:
    rng = np.random.default_rng(11)
    t = np.arange(weeks)
    start = date(2010, 2, 5)
    frames = []
    for s in range(n_series):
        y = rng.uniform(100, 2000) * (1 + 0.4 * np.sin(2 * np.pi * t / 52)) * rng.lognormal(0, 0.3, weeks)
        if s % 5 == 0:
            y[rng.random(weeks) < 0.5] = 0.0  # some intermittent series for the other model family
        frames.append(
            pl.DataFrame(
                {"unique_id": f"s{s:02d}", "ds": [start + timedelta(weeks=int(w)) for w in t], "y": y}
            )
        )
    return pl.concat(frames).with_columns(pl.col("ds").cast(pl.Datetime("us")))


def test_no_leakage_changing_every_held_out_value_changes_no_forecast() -> None:
    """Per origin, every value from its hold-out's first period on is changed (tripled and shifted); our
    forecasts for that origin — the global model's included, holiday effects on — stay identical, while
    its scores move (the changed values are the ones scored)."""
    panel = _noisy_weekly_panel()
    options = {"freq": "W-FRI", "horizon": 8, "baselines": (), "holidays": "US", "origins": 2}
    base = run_backtest(panel, global_model="on", **options)  # type: ignore[arg-type]
    assert any("LightGBM" in m for o in base.origins for m in o.models["model"].to_list())
    for k, origin in enumerate(base.origins):
        start = datetime.fromisoformat(origin.test_start)
        changed = panel.with_columns(
            y=pl.when(pl.col("ds") >= start).then(pl.col("y") * 3 + 500).otherwise(pl.col("y"))
        )
        again = run_backtest(changed, global_model="on", **options)  # type: ignore[arg-type]
        for earlier in range(k + 1):  # this origin and every one before it trained before `start`
            assert_frame_equal(again.origins[earlier].forecasts, base.origins[earlier].forecasts)
            assert (
                again.origins[earlier].models["model"].to_list()
                == base.origins[earlier].models["model"].to_list()
            )
        assert again.origins[k].scores[0].mase != pytest.approx(origin.scores[0].mase)


def test_backtest_origins_print_each_origin_and_the_mean(tmp_path: Path) -> None:
    archive, _, weeks = _weekly_panel(tmp_path)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        app, _args(archive, "--origins", "3", "--baselines", "SeasonalNaive", "--forecasts-out", str(out))
    )
    assert result.exit_code == 0, result.output
    starts = [date(2010, 2, 5) + timedelta(weeks=weeks - 8 * k) for k in (3, 2, 1)]
    for start in starts:
        assert f"Hold-out 8 periods from {start}" in result.output
    assert "Mean over the 3 origins" in result.output
    assert _methods(result.output) == ["ChainSync", "SeasonalNaive"] * 4
    written = pl.read_csv(out, try_parse_dates=True)
    assert written.columns == ["unique_id", "ds", "yhat", "lo_80", "hi_80", "lo_95", "hi_95"]
    assert written.height == 6 * 8 * 3
    assert written.group_by("unique_id", "ds").len()["len"].max() == 1  # hold-outs do not overlap
    assert written["ds"].min() == starts[0]


def test_backtest_until_cuts_the_panel(tmp_path: Path) -> None:
    archive, _, weeks = _weekly_panel(tmp_path)
    last = date(2010, 2, 5) + timedelta(weeks=weeks - 21)
    result = CliRunner().invoke(app, _args(archive, "--until", str(last), "--baselines", "none"))
    assert result.exit_code == 0, result.output
    assert f"Hold-out 8 periods from {last - timedelta(weeks=7)}" in result.output
    bad = CliRunner().invoke(app, _args(archive, "--until", "last friday"))
    assert bad.exit_code == 2 and "--until" in bad.output
