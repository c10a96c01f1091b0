"""Anomaly methods of the core, importable without dagster or pyod (the pipeline's assets and the
``chainsync detect`` command call them)."""

from chainsync.anomalies.sales import (
    DETECT_COLUMNS,
    DetectConfig,
    detect_panel,
    score_panel,
    with_id_columns,
)

__all__ = ["DETECT_COLUMNS", "DetectConfig", "detect_panel", "score_panel", "with_id_columns"]
