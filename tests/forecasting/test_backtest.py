"""`chainsync backtest` on a small weekly panel CSV (zipped), baselines included."""

from __future__ import annotations

import zipfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from chainsync.backtest import DEFAULT_BASELINES, parse_baselines
from chainsync.cli import app


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
