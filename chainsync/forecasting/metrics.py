"""Point and interval accuracy measures, per series and pooled (numpy / polars, no statsforecast)."""

from __future__ import annotations

import numpy as np
import polars as pl


def scale_for(y: np.ndarray, season: int) -> float:
    """MASE denominator: in-sample mean absolute error of the seasonal-naive forecast (lag ``season``).

    Falls back to the naive (lag 1) error for series shorter than a season and one season, then to the mean
    absolute value, then to 1.0, so the scale is always positive."""
    y = np.asarray(y, dtype=float)
    for lag in (season, 1):
        if lag >= 1 and y.size > lag:
            value = float(np.mean(np.abs(y[lag:] - y[:-lag])))
            if value > 0:
                return value
    value = float(np.mean(np.abs(y))) if y.size else 0.0
    return value if value > 0 else 1.0


def mase(scored: pl.DataFrame, pred: str = "yhat") -> float:
    """Mean over series of MAE / scale; ``scored`` has unique_id, y, ``pred`` and scale per row."""
    per_series = scored.group_by("unique_id").agg(
        ((pl.col("y") - pl.col(pred)).abs().mean() / pl.col("scale").first()).alias("m")
    )
    return float(per_series["m"].mean())  # type: ignore[arg-type]


def wape(scored: pl.DataFrame, pred: str = "yhat") -> float:
    """Sum of absolute errors over sum of absolute actuals, pooled over every row."""
    denominator = float(scored["y"].abs().sum())
    return float((scored["y"] - scored[pred]).abs().sum()) / denominator if denominator else float("nan")


def coverage(scored: pl.DataFrame, lo: str = "lo_80", hi: str = "hi_80") -> float:
    """Share of actuals inside [lo, hi]."""
    inside = (scored["y"] >= scored[lo]) & (scored["y"] <= scored[hi])
    return float(inside.mean())  # type: ignore[arg-type]
