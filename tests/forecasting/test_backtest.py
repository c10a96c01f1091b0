"""`chainsync backtest` on a small weekly panel CSV (zipped), baselines included."""

from __future__ import annotations

import zipfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from typer.testing import CliRunner

from chainsync.cli import app


def test_backtest_command_writes_forecasts_and_scores(tmp_path: Path) -> None:
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
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        app,
        [
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
            "--forecasts-out",
            str(out),
        ],
    )
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
