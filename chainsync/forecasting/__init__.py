"""Demand-pattern-routed forecasting shared by the ``demand_forecast`` asset, ``chainsync backtest`` and
``bench/forecast.py``.

Input and output are polars frames in statsforecast's long layout (``unique_id``, ``ds``, ``y``).
statsforecast
is imported only inside the functions that need it, so importing this package is cheap.
"""

from chainsync.forecasting.method import (
    LEVELS,
    PanelForecast,
    classify_demand,
    forecast_panel,
    season_length_for,
)
from chainsync.forecasting.metrics import coverage, mase, scale_for, wape

__all__ = [
    "LEVELS",
    "PanelForecast",
    "classify_demand",
    "coverage",
    "forecast_panel",
    "mase",
    "scale_for",
    "season_length_for",
    "wape",
]
