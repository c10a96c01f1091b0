"""Store-day sales anomalies from two views, merged into one row per store-day.

- **features**: robust per-store-and-weekday z-scores of the day's revenue, transactions, basket, refund, void
  and discount rates, scored by a pyod ensemble (ECOD and IForest, combined by rank average);
- **retrospective**: the day's units and net revenue judged by the core sales anomaly method
  (``chainsync.anomalies.score_panel``, the one behind ``chainsync detect``) on the panel of store-days:
  against the store's same weekdays around it, the chain's shock that day and the same day in other years.

Scoring keeps every raw score (``score_store_days``); flagging (``flag_store_days``) reads only those raw
columns, so a threshold can move without refitting anything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from chainsync.anomalies import DetectConfig, score_panel
from chainsync.snapshot_contract import STORE_DAY_FEATURES
from pipelines.defs.anomalies.detectors import grade_severity

FEATURES = STORE_DAY_FEATURES  # the store-day features, as the snapshot contract publishes them
DRIVER_Z = 3.0  # a feature drives an anomaly when its robust z-score exceeds this
MAX_DRIVERS = 3
# A store-day is a feature anomaly when the ensemble score passes the quantile threshold *and* some feature
# lies this many scaled MADs from its store-and-weekday norm (robust: the share flagged follows the data).
ANOMALY_Z = 6.0
# A store-day is a retrospective anomaly when units or revenue lie this many robust standard deviations
# from the expected value of chainsync.anomalies (its own z: one method, two entry points) *and* some feature
# lies RESIDUAL_MIN_Z scaled MADs from its norm (0: the method alone decides, as `chainsync detect` does).
RESIDUAL_THRESHOLD = DetectConfig().z
RESIDUAL_MIN_Z = 0.0
# Every store of a chain is large enough to matter: no minimum amount beside the method's minimum effect.
STORE_DAY_CONFIG = DetectConfig(min_amount_share=0.0)
# Added to every scaled MAD: a rate that is usually exactly 0 (voids) would otherwise turn one void into an
# infinite z-score. One percentage point for rates, about 1 % for the log features.
Z_FLOOR = 0.01
SCALE_FEATURES = ("net_revenue_cents", "transactions", "avg_basket_cents")  # compared in logs, net of the day
IFOREST_SEED = 0  # IForest is randomised: a fixed seed makes the scores (and the flags) reproducible
# The pyod ensemble. Measured with bench/anomaly.py --ensemble (README): beside ECOD, COPOD or HBOS lose
# more planted days than IForest.
ENSEMBLE = ("ECOD", "IForest")
RESIDUAL_TARGETS = {"units": "units", "revenue": "net_revenue_cents"}  # driver name -> actual column
DETECTOR_FEATURES = "features"
DETECTOR_RESIDUAL = "retrospective"


@dataclass(frozen=True)
class SalesThresholds:
    """The decision knobs, applied to stored raw scores (settings ANOMALY_THRESHOLD_QUANTILE,
    ANOMALY_Z_THRESHOLD, ANOMALY_DRIVER_Z, ANOMALY_RESIDUAL_THRESHOLD, ANOMALY_RESIDUAL_MIN_Z)."""

    score_quantile: float = 0.99
    z: float = ANOMALY_Z
    driver_z: float = DRIVER_Z
    residual: float = RESIDUAL_THRESHOLD
    residual_min_z: float = RESIDUAL_MIN_Z


ANOMALY_SCHEMA = pl.Schema(
    {
        "store_id": pl.String(),
        "sale_date": pl.Date(),
        "anomaly_score": pl.Float64(),  # ensemble: rank average of ECOD and IForest, in (0, 1]
        "threshold": pl.Float64(),  # the score_quantile of anomaly_score
        "is_anomaly": pl.Boolean(),
        "detectors": pl.String(),  # which views fired: features, retrospective (comma-joined)
        "severity": pl.String(),
        "drivers": pl.String(),
        "net_revenue_cents": pl.Int64(),
        "transactions": pl.Int64(),
        "avg_basket_cents": pl.Float64(),
        "refund_rate": pl.Float64(),
        "void_rate": pl.Float64(),
        "discount_rate": pl.Float64(),
        "units": pl.Int64(),
        "max_abs_z": pl.Float64(),
        "expected_revenue_lo_cents": pl.Float64(),
        "expected_revenue_hi_cents": pl.Float64(),
        # Raw scores and norms, kept so flags can be recomputed without refitting.
        "ecod_score": pl.Float64(),
        "iforest_score": pl.Float64(),
        **{f"z_{f}": pl.Float64() for f in FEATURES},
        "revenue_norm_log": pl.Float64(),  # log1p revenue norm of the store-weekday on the chain's day level
        "revenue_mad_log": pl.Float64(),
        # Retrospective view (chainsync.anomalies): signed robust z of units / revenue against the expected
        # value, 0 when the change is below the method's minimum effect, null when not scored; forecast_* are
        # the method's expected value and its flagging bounds (lo/hi_95; the 80 % columns stay null).
        "units_residual": pl.Float64(),
        "revenue_residual": pl.Float64(),
        "forecast_units": pl.Float64(),
        "forecast_units_lo_80": pl.Float64(),
        "forecast_units_hi_80": pl.Float64(),
        "forecast_units_lo_95": pl.Float64(),
        "forecast_units_hi_95": pl.Float64(),
        "forecast_revenue_cents": pl.Float64(),
        "forecast_revenue_lo_80_cents": pl.Float64(),
        "forecast_revenue_hi_80_cents": pl.Float64(),
        "forecast_revenue_lo_95_cents": pl.Float64(),
        "forecast_revenue_hi_95_cents": pl.Float64(),
    }
)
# What flag_store_days decides; everything else is a raw score, a norm or an input.
DECISION_COLUMNS = (
    "threshold", "is_anomaly", "detectors", "severity", "drivers",
    "expected_revenue_lo_cents", "expected_revenue_hi_cents",
)  # fmt: skip
RAW_COLUMNS = [c for c in ANOMALY_SCHEMA if c not in DECISION_COLUMNS]

# Store-day features (store-local days) from the sale lines; voids live there, the sales mart excludes them.
FEATURES_SQL = """
    with lines as (
        select store_id, sale_date, transaction_id, sale_kind, quantity,
               quantity * unit_price_cents as gross_cents, discount_cents
        from intermediate.int_sale_lines_localized
    ),
    daily as (
        select
            store_id,
            sale_date,
            sum(case sale_kind when 'sale' then gross_cents - discount_cents
                               when 'refund' then -(gross_cents - discount_cents)
                               else 0 end) as net_revenue_cents,
            sum(case sale_kind when 'sale' then quantity when 'refund' then -quantity else 0 end) as units,
            count(distinct case when sale_kind = 'sale' then transaction_id end) as transactions,
            count(distinct case when sale_kind = 'refund' then transaction_id end) as refunds,
            count(distinct case when sale_kind = 'void' then transaction_id end) as voids,
            count(distinct transaction_id) as all_transactions,
            sum(case when sale_kind = 'sale' then discount_cents else 0 end) as sale_discount_cents,
            sum(case when sale_kind = 'sale' then gross_cents else 0 end) as sale_gross_cents
        from lines
        group by all
    )
    select
        store_id,
        sale_date,
        cast(net_revenue_cents as bigint) as net_revenue_cents,
        cast(transactions as bigint) as transactions,
        net_revenue_cents / nullif(transactions, 0) as avg_basket_cents,
        refunds / nullif(all_transactions, 0) as refund_rate,
        voids / nullif(all_transactions, 0) as void_rate,
        sale_discount_cents / nullif(sale_gross_cents, 0) as discount_rate,
        cast(units as bigint) as units
    from daily
    order by store_id, sale_date
"""


def empty_anomalies() -> pl.DataFrame:
    return pl.DataFrame(schema=ANOMALY_SCHEMA)


MIN_STORES_FOR_DAY_LEVEL = 5  # fewer stores that day: one store's spike would move the chain's median


def _day_level(column: str) -> pl.Expr:
    """The chain-wide median of ``column`` that day, or 0 when fewer than MIN_STORES_FOR_DAY_LEVEL report."""
    stores = pl.col("store_id").n_unique().over("sale_date")
    return (
        pl.when(stores >= MIN_STORES_FOR_DAY_LEVEL)
        .then(pl.col(column).median().over("sale_date"))
        .otherwise(0.0)
    )


def _sampling_error(feature: str, group: list[str]) -> pl.Expr:
    """Binomial standard error of a rate on the day's transactions (3 refunds in 37 sales is noise, 30 in
    370 is not); 0 for the log features."""
    if feature in SCALE_FEATURES:
        return pl.lit(0.0)
    p = pl.col(f"v_{feature}").median().over(group).clip(0.01, 1.0)  # a 0 % norm still has noise
    return (p * (1 - p) / pl.col("transactions").cast(pl.Float64).clip(lower_bound=1.0)).sqrt()


def _detector(name: str):  # type: ignore[no-untyped-def]
    """A pyod detector by name, imported here (pyod takes seconds to import)."""
    if name == "ECOD":
        from pyod.models.ecod import ECOD

        return ECOD()
    if name == "IForest":
        from pyod.models.iforest import IForest

        return IForest(n_estimators=100, random_state=IFOREST_SEED)
    if name == "COPOD":
        from pyod.models.copod import COPOD

        return COPOD()
    if name == "HBOS":
        from pyod.models.hbos import HBOS

        return HBOS()
    raise ValueError(f"unknown detector {name!r}: ECOD, IForest, COPOD or HBOS")


def ensemble_scores(
    matrix: np.ndarray, detectors: tuple[str, ...] = ENSEMBLE
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Fit each pyod detector of ``detectors`` on ``matrix`` (rows x features); returns (combined, raw
    scores per detector). ``combined`` is the rank average: each detector's scores become ranks / n (ties
    averaged) and the combined score is their mean, in (0, 1]. Ranks put the detectors' incomparable scales
    on one, and a row must look unusual to all of them to rank near 1."""
    clipped = np.clip(matrix, -50, 50)
    raw = []
    for name in detectors:
        detector = _detector(name)
        detector.fit(clipped)
        raw.append(np.asarray(detector.decision_scores_, dtype=float))
    ranks = [pl.Series(s).rank("average").to_numpy() / s.size for s in raw]
    return np.mean(ranks, axis=0), raw


def store_day_scores(totals: pl.DataFrame, config: DetectConfig = STORE_DAY_CONFIG) -> pl.DataFrame:
    """The core sales anomaly method (``chainsync.anomalies.score_panel``) on each store's daily units and
    net revenue (``totals``: store_id, sale_date, units, net_revenue_cents), one daily panel per target with
    the stores as its series. Returns store_id, sale_date, target (units / revenue), expected, lo, hi (the
    bounds outside which the method flags; units, cents), z (signed robust z) and effect (the change as a
    share of the expected value); store-days the method cannot score yet (a store's first weeks) have no
    row."""
    out_schema = {
        "store_id": pl.String,
        "sale_date": pl.Date,
        "target": pl.String,
        **{c: pl.Float64 for c in ("expected", "lo", "hi", "z", "effect")},
    }
    parts = []
    for name, column in RESIDUAL_TARGETS.items():
        if totals.is_empty() or column not in totals.columns:
            continue
        panel = totals.select(unique_id="store_id", ds="sale_date", y=pl.col(column).cast(pl.Float64))
        scored = score_panel(panel.drop_nulls(), freq="D", config=config)
        parts.append(
            scored.select(
                store_id="unique_id",
                sale_date=pl.col("ds").cast(pl.Date),
                target=pl.lit(name),
                expected="expected",
                lo="lo",
                hi="hi",
                z="z",
                effect="effect",
            )
        )
    if not parts:
        return pl.DataFrame(schema=out_schema)
    return pl.concat(parts).cast(out_schema)  # type: ignore[arg-type]


def _residual_columns(
    features: pl.DataFrame, scores: pl.DataFrame, min_effect: float = STORE_DAY_CONFIG.min_effect
) -> pl.DataFrame:
    """Join the method's scores to the store-days: ``{target}_residual`` is its signed z where the change
    reaches ``min_effect`` of the expected value (else 0: a small change is no anomaly however quiet the
    store), ``forecast_*`` its expected value and bounds."""
    frame = features
    for name in RESIDUAL_TARGETS:
        part = scores.filter(pl.col("target") == name).select(
            "store_id",
            "sale_date",
            pl.when(pl.col("effect").abs() >= min_effect)
            .then(pl.col("z"))
            .otherwise(0.0)
            .alias(f"{name}_residual"),
            pl.col("expected").alias(f"{name}_yhat"),
            pl.col("lo").alias(f"{name}_lo_95"),
            pl.col("hi").alias(f"{name}_hi_95"),
        )
        frame = frame.join(part, on=["store_id", "sale_date"], how="left").with_columns(
            pl.lit(None, pl.Float64).alias(f"{name}_lo_80"), pl.lit(None, pl.Float64).alias(f"{name}_hi_80")
        )
    return frame.rename(
        {
            "units_yhat": "forecast_units",
            "units_lo_80": "forecast_units_lo_80",
            "units_hi_80": "forecast_units_hi_80",
            "units_lo_95": "forecast_units_lo_95",
            "units_hi_95": "forecast_units_hi_95",
            "revenue_yhat": "forecast_revenue_cents",
            "revenue_lo_80": "forecast_revenue_lo_80_cents",
            "revenue_hi_80": "forecast_revenue_hi_80_cents",
            "revenue_lo_95": "forecast_revenue_lo_95_cents",
            "revenue_hi_95": "forecast_revenue_hi_95_cents",
        }
    )


def score_store_days(
    features: pl.DataFrame,
    retrospective: pl.DataFrame | None = None,
    *,
    detectors: tuple[str, ...] = ENSEMBLE,
) -> pl.DataFrame:
    """Raw scores of every store-day of ``features`` (columns: store_id, sale_date, ``FEATURES`` and units):
    no threshold applied (``flag_store_days`` decides).

    Revenue, transactions and basket are taken in logs net of the chain-wide median of that day (a holiday
    lifts every store, so it is not an anomaly); then each feature becomes a robust z-score within its store
    and weekday (median and MAD), so stores of any size and quiet Mondays compare. The ``detectors``
    ensemble (ECOD and IForest) scores the z-score vectors (``anomaly_score`` is the rank average;
    ``ecod_score`` and ``iforest_score`` keep those two detectors' raw scores).
    ``retrospective`` (``store_day_scores``) adds the residual columns; without it they are null."""
    if features.height < 10:
        return empty_anomalies().select(RAW_COLUMNS)
    if "units" not in features.columns:
        features = features.with_columns(units=pl.lit(None, pl.Int64))
    filled = features.with_columns(
        [pl.col(f).cast(pl.Float64).fill_null(0.0).fill_nan(0.0).alias(f"f_{f}") for f in FEATURES]
    ).with_columns(weekday=pl.col("sale_date").dt.weekday())
    group = ["store_id", "weekday"]
    adjusted = filled.with_columns(
        [(pl.col(f"f_{f}").clip(lower_bound=0.0) + 1.0).log().alias(f"v_{f}") for f in SCALE_FEATURES]
        + [pl.col(f"f_{f}").alias(f"v_{f}") for f in FEATURES if f not in SCALE_FEATURES]
    ).with_columns(
        [(pl.col(f"v_{f}") - _day_level(f"v_{f}")).alias(f"v_{f}") for f in SCALE_FEATURES]
        + [_day_level("v_net_revenue_cents").alias("day_level")]
    )
    z = adjusted.with_columns(
        [
            (
                (pl.col(f"v_{f}") - pl.col(f"v_{f}").median().over(group))
                / (
                    (pl.col(f"v_{f}") - pl.col(f"v_{f}").median().over(group)).abs().median().over(group)
                    * 1.4826
                    + Z_FLOOR
                    + _sampling_error(f, group)
                )
            ).alias(f"z_{f}")
            for f in FEATURES
        ]
        + [
            (pl.col("v_net_revenue_cents").median().over(group) + pl.col("day_level")).alias(
                "revenue_norm_log"
            ),
            (pl.col("v_net_revenue_cents") - pl.col("v_net_revenue_cents").median().over(group))
            .abs()
            .median()
            .over(group)
            .alias("revenue_mad_log"),
        ]
    )
    zcols = [f"z_{f}" for f in FEATURES]
    combined, raw = ensemble_scores(z.select(zcols).to_numpy(), detectors)
    scored = z.with_columns(
        anomaly_score=pl.Series(combined),
        **{
            f"{name.lower()}_score": pl.Series(raw[detectors.index(name)])
            if name in detectors
            else pl.lit(None, pl.Float64)
            for name in ("ECOD", "IForest")
        },
        max_abs_z=pl.max_horizontal([pl.col(c).abs().clip(upper_bound=1e6) for c in zcols]),
    )
    if retrospective is None or retrospective.is_empty():
        scored = scored.with_columns(
            [pl.lit(None, pl.Float64).alias(c) for c in RAW_COLUMNS if c not in scored.columns]
        )
    else:
        scored = _residual_columns(scored, retrospective)
    schema = {c: ANOMALY_SCHEMA[c] for c in RAW_COLUMNS}
    return scored.select(RAW_COLUMNS).cast(schema).sort("store_id", "sale_date")  # type: ignore[arg-type]


def flag_store_days(raw: pl.DataFrame, thresholds: SalesThresholds) -> pl.DataFrame:
    """Decide from the raw scores of ``score_store_days`` alone (no model is fitted here), so changing a
    threshold re-flags the stored rows.

    - features: ``anomaly_score`` above its ``score_quantile`` (``threshold``) **and** ``max_abs_z`` at
      least ``z``; severity by ``max_abs_z``: medium below 2·z, high below 4·z, critical beyond;
    - retrospective: units or revenue at least ``residual`` robust standard deviations from the expected
      value of ``chainsync.anomalies`` (a change of at least its minimum effect) **and** ``max_abs_z`` at
      least ``residual_min_z`` (0 by default: the method alone decides, as ``chainsync detect`` does);
      severity by |residual|: medium below 2·residual, high below 4·residual, critical beyond.

    One row per store-day: ``detectors`` names the views that fired, severity is the higher of theirs,
    ``drivers`` lists the features with |z| >= ``driver_z`` (largest first, at most MAX_DRIVERS) then
    ``units_residual`` / ``revenue_residual`` when that residual fired. ``expected_revenue_lo/hi_cents`` is
    the retrospective method's range for the day where it scored one, else the store-weekday norm ± ``z``
    scaled MADs on the day's chain level."""
    if raw.is_empty():
        return empty_anomalies()
    zcols = [f"z_{f}" for f in FEATURES]
    threshold = float(raw["anomaly_score"].quantile(thresholds.score_quantile, interpolation="linear") or 0.0)
    residual_fired = {
        name: pl.col(f"{name}_residual")
        .abs()
        .fill_null(0.0)
        .pipe(lambda r: (r > 0) & (r >= thresholds.residual))
        for name in RESIDUAL_TARGETS
    }
    by_features = (pl.col("anomaly_score") > threshold) & (pl.col("max_abs_z") >= thresholds.z)
    corroborated = pl.col("max_abs_z") >= thresholds.residual_min_z
    residual_fired = {name: fired & corroborated for name, fired in residual_fired.items()}
    by_residual = residual_fired["units"] | residual_fired["revenue"]
    residual_size = pl.max_horizontal(
        [pl.col(f"{name}_residual").abs().fill_null(0.0) for name in RESIDUAL_TARGETS]
    )
    feature_grade = grade_severity(pl.col("max_abs_z"), 2 * thresholds.z, 4 * thresholds.z)
    residual_grade = grade_severity(residual_size, 2 * thresholds.residual, 4 * thresholds.residual)
    order = {"medium": 1, "high": 2, "critical": 3}
    rank_of = {0: "low", **{v: k for k, v in order.items()}}
    # Drivers: features with |z| >= driver_z by |z| descending, then the residuals that fired.
    feature_drivers = (
        raw.select(pl.int_range(pl.len()).alias("row"), *zcols)
        .unpivot(index="row", variable_name="feature", value_name="z")
        .filter(pl.col("z").abs() >= thresholds.driver_z)
        .sort(["row", pl.col("z").abs()], descending=[False, True])
        .group_by("row", maintain_order=True)
        .agg(pl.col("feature").str.strip_prefix("z_").head(MAX_DRIVERS).alias("feature_drivers"))
    )
    spread = thresholds.z * 1.4826 * pl.col("revenue_mad_log")
    out = (
        raw.with_row_index("row")
        .with_columns(pl.col("row").cast(pl.Int64))
        .join(feature_drivers, on="row", how="left")
        .with_columns(
            threshold=pl.lit(threshold),
            f_fired=by_features,
            r_fired=by_residual,
            residual_drivers=pl.concat_list(
                [
                    pl.when(fired)
                    .then(pl.lit([f"{name}_residual"]))
                    .otherwise(pl.lit([], pl.List(pl.String)))
                    for name, fired in residual_fired.items()
                ]
            ),
            f_grade=feature_grade.replace_strict(order, return_dtype=pl.Int8),
            r_grade=residual_grade.replace_strict(order, return_dtype=pl.Int8),
        )
        .with_columns(
            is_anomaly=pl.col("f_fired") | pl.col("r_fired"),
            detectors=pl.concat_list(
                pl.when(pl.col("f_fired"))
                .then(pl.lit([DETECTOR_FEATURES]))
                .otherwise(pl.lit([], pl.List(pl.String))),
                pl.when(pl.col("r_fired"))
                .then(pl.lit([DETECTOR_RESIDUAL]))
                .otherwise(pl.lit([], pl.List(pl.String))),
            ).list.join(","),
            severity=pl.max_horizontal(
                pl.when(pl.col("f_fired")).then(pl.col("f_grade")).otherwise(0),
                pl.when(pl.col("r_fired")).then(pl.col("r_grade")).otherwise(0),
            ).replace_strict(rank_of, return_dtype=pl.String),
            drivers=pl.concat_list(
                pl.col("feature_drivers").fill_null(pl.lit([], pl.List(pl.String))), "residual_drivers"
            ).list.join(","),
            expected_revenue_lo_cents=pl.coalesce(
                "forecast_revenue_lo_95_cents",
                ((pl.col("revenue_norm_log") - spread).exp() - 1.0).clip(lower_bound=0.0),
            ),
            expected_revenue_hi_cents=pl.coalesce(
                "forecast_revenue_hi_95_cents", (pl.col("revenue_norm_log") + spread).exp() - 1.0
            ),
        )
    )
    return out.select(list(ANOMALY_SCHEMA)).cast(ANOMALY_SCHEMA).sort("store_id", "sale_date")


def score_sales_anomalies(
    features: pl.DataFrame,
    retrospective: pl.DataFrame | None = None,
    *,
    threshold_quantile: float,
    anomaly_z: float = ANOMALY_Z,
    driver_z: float = DRIVER_Z,
    residual_threshold: float = RESIDUAL_THRESHOLD,
    residual_min_z: float = RESIDUAL_MIN_Z,
) -> pl.DataFrame:
    """Score and flag every store-day: ``flag_store_days(score_store_days(features, retrospective), ...)``."""
    thresholds = SalesThresholds(threshold_quantile, anomaly_z, driver_z, residual_threshold, residual_min_z)
    return flag_store_days(score_store_days(features, retrospective), thresholds)


def score_sales_panel(
    features: pl.DataFrame, *, config: DetectConfig = STORE_DAY_CONFIG, thresholds: SalesThresholds
) -> pl.DataFrame:
    """Everything ``sales_anomalies`` computes from the store-day ``features`` (``FEATURES_SQL``'s
    columns): the retrospective scores of ``chainsync.anomalies``, the ensemble's raw scores and the
    flags. One function, so it runs the same in-process and as one task on a Dask worker."""
    return flag_store_days(score_store_days(features, store_day_scores(features, config)), thresholds)
