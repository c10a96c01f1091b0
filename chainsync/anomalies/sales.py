"""Retrospective anomalies of a sales panel: one method behind ``chainsync detect`` and the pipeline's
``sales_anomalies`` (store-day revenue and units, daily).

Detection is after the fact, so a period is judged against what surrounds it on both sides, not against a
forecast made before it. For every series and period ``t`` (values ``y``, one regular frequency):

1. **Local level** ``L_t``: the median of the series at the neighbouring periods of the same seasonal
   position, leaving ``t`` out (weekly and monthly data: two periods either side; daily data: the same
   weekday one, two and three weeks either side). A one-period spike or drop moves a neighbour's median by
   one rank at most.
2. **Deviation** ``D_t = (y_t − L_t) / d_t`` with ``d_t = max(|L_t|, ¼ × the series' median |y|)``: the change
   relative to the local level, with a floor so a series near zero (returns, a closed department) does
   not divide by nothing.
3. **Shared shocks** are taken out: the median ``D`` of the whole panel that period (a holiday, weather,
   a chain-wide promotion), then of each peer group (``peer_columns``: for Walmart's Store × Dept, every
   department of the store — a store closed by a storm — and the department in every store — an Easter
   candy week), each on what the previous left. Peer groups need ``MIN_PANEL_SERIES`` series reporting.
4. **Neighbour series**: what is left, the series' own movement, is predicted by the ``neighbours`` series
   of the panel whose own movements correlate most with it (robust z-scores clipped at ±3, over at least
   a year of common periods): the median of their movements that period, each rescaled to this series'
   spread (a hurricane week at the stores of one region, departments sold together). Skipped with fewer
   than ``MIN_PANEL_SERIES`` other series.
5. **The same moment in other years and the adjacent periods**: the remainder ``R_t`` is measured from the
   nearest of 0, the mean ``R`` at the period's siblings in the other years of the series (holiday periods
   and the periods just before and after one are matched by the holiday's name through
   ``chainsync.forecasting.holidays.holiday_calendar``, so Easter and Thanksgiving are found where they
   moved; other periods by the season: 52 weeks, 364 days, 12 months), and ``R`` of the previous and next
   period (a change an adjacent period shares is sustained — a promotion fortnight — not a one-period
   anomaly). A normal week whose sibling was a spike is explained by 0, so one anomaly does not raise a
   false one a year later.
6. **Score**: the residual ``e_t = (y_t − expected_t) / max(|expected_t|, the floor)`` over the series' own
   scale on that side: the larger of 1.4826 × its median |e| and the 95th percentile of its upward (or
   downward) residuals / 1.96 — a series with a promotion every few months is not surprised by one, and its
   drops are still judged by its drops — combined in quadrature with ``scale_floor``; then widened in a
   period where the series' whole group is unsettled (the group's median |z| that period over the panel's
   usual median |z|: the week after Christmas, a blizzard at one store). A period is flagged when
   ``|z| ≥ z``, ``|e| ≥ min_effect`` and ``|y − expected| ≥ min_amount_share`` × the panel's median series
   level (a change a manager would act on), and the period is an isolated surprise of the series' own,
   without precedent (docs/anomalies.md, step 8):
7. **Isolated, the series' own, without precedent**: both adjacent periods are ordinary (|z| below
   ``isolation``, or below ``ADJACENT_ECHO`` × the period's own |z|, the echo a large change leaves in its
   neighbours' local levels) — a period beside another unusual one belongs to a sustained or shifted change
   (a promotion fortnight, sales booked a week late, the edge of a step), not a one-period anomaly; and |z|
   is at least ``precedent`` × the series' largest |z| on the same side at its other periods (the period and
   its two neighbours left out) — a department that has jumped like this before, in a week nothing explains,
   has heavier tails than its 95th percentile shows, and its next jump is no news; and fewer than
   ``company`` of the series' neighbour series (step 4) are unusual in the same direction that period (|z| ≥
   COMPANY_Z) — a storm or a regional promotion at a few stores that move together is their shared event,
   too narrow to move the median of twenty.

``expected = L_t + d_t × (shared shocks + neighbours' movement + the explanation chosen)``; ``lo`` / ``hi``
are the bounds outside which the period is unusual (each from its side's scale; step 7 decides whether an
unusual period is flagged). Units: those of ``y``;
``score`` is |z| in robust standard deviations, ``effect`` the residual as a fraction of the expected value.

Nothing here fits a model: the full Walmart panel (3,331 series × 143 weeks) scores in about 3 seconds
(the neighbour search is one correlation matrix, in blocks of ``PEER_CHUNK`` series).
Judged on injected anomalies by ``bench/anomaly_real.py`` (docs/anomalies.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date, datetime
from typing import cast

import numpy as np
import polars as pl

DETECT_COLUMNS = ["unique_id", "ds", "score", "direction", "expected", "lo", "hi"]
SCORE_SCHEMA = pl.Schema(
    {
        "unique_id": pl.String(),
        "ds": pl.Datetime("us"),
        "y": pl.Float64(),
        "expected": pl.Float64(),
        "lo": pl.Float64(),
        "hi": pl.Float64(),
        "z": pl.Float64(),  # signed robust z of the residual
        "score": pl.Float64(),  # |z|
        "effect": pl.Float64(),  # residual as a fraction of the expected value (signed)
        "direction": pl.String(),  # up / down
        "explained_by": pl.String(),  # level (none needed) / season (the same moment in another year)
        "is_anomaly": pl.Boolean(),
    }
)
MAD_TO_SD = 1.4826
LEVEL_FLOOR_SHARE = 0.25  # d_t is at least this share of the series' median |y|
MIN_PANEL_SERIES = 5  # fewer series of a group reporting a period: no shared shock taken out
# A group's median |z| in one period is noisy with few members (8 stores: often 1.5x the usual), so only
# groups this large widen their members' scale.
MIN_WIDEN_SERIES = 20
TAIL_QUANTILE = 0.95  # of |residual|: the series' tail, for its scale
TAIL_TO_SD = 1.959964  # the 0.95 quantile of |N(0, 1)|
PEER_CLIP = 3.0  # robust z at which movements are clipped for correlations (one spike barely moves them)
ADJACENT_ECHO = 0.5  # a neighbour below half a period's own |z| leaves it isolated (echo, noise)
COMPANY_Z = 3.0  # |z| at which a neighbour series counts as unusual too that period
PRECEDENT_TOP = 4  # largest values kept per series and side to find the largest outside a period's window
PEER_CHUNK = 1000  # series per block of the correlation matrix (memory: block x series floats)


@dataclass(frozen=True)
class DetectConfig:
    """The decision knobs. ``z``: robust standard deviations of the series' residuals; ``min_effect``: the
    smallest change flagged, as a fraction of the expected value (0.2 = 20 %); ``scale_floor``: a relative
    noise floor added in quadrature to each series' scale; ``min_history``: values a series needs before
    any of its periods is scored; ``min_amount_share``: the smallest change flagged in units of ``y``, as a
    share of the panel's median series level (median over series of their median |y|); ``holidays``:
    country of the holiday calendar used to match moving holidays across years (None: by season only);
    ``neighbours``: how many most-correlated series of the panel predict a series' own movement (0: none;
    used only when the panel has at least ``MIN_PANEL_SERIES`` other series); ``isolation``: the |z| an
    adjacent period may reach for a period to count as isolated (0: no isolation test); ``precedent``: how
    many times the series' largest same-side |z| elsewhere a period's |z| must reach (0: no precedent
    test); ``company``: how many of the series' neighbour series unusual in the same direction that period
    make it a shared event rather than the series' own anomaly (0: no such test; needs the neighbour
    series). Chosen on the clean Walmart panel and injection designs (docs/anomalies.md), not per panel."""

    z: float = 3.5
    min_effect: float = 0.2
    scale_floor: float = 0.05
    min_history: int = 12
    min_amount_share: float = 0.5
    holidays: str | None = "US"
    neighbours: int = 20
    isolation: float = 2.5
    precedent: float = 1.5
    company: int = 2


def _level_offsets(freq: str) -> tuple[int, ...]:
    """Neighbouring periods at the same seasonal position: same weekday for daily data."""
    from chainsync.forecasting.holidays import is_daily

    return (-21, -14, -7, 7, 14, 21) if is_daily(freq) else (-2, -1, 1, 2)


def _year_length(freq: str) -> int:
    """Periods in a year at the same seasonal position (364 days keeps the weekday)."""
    from chainsync.forecasting import season_length_for
    from chainsync.forecasting.holidays import is_daily

    if is_daily(freq):
        return 364
    season = season_length_for(freq)
    return season if season in (52, 12, 4) else 0


def _grid(panel: pl.DataFrame, freq: str) -> pl.Series:
    """Every period from the panel's first to its last at ``freq``; raises ValueError when a ``ds`` of the
    panel is not on that grid (a Thursday in a W-FRI panel)."""
    from chainsync.forecasting.method import _polars_interval

    first = cast(datetime, panel["ds"].min())
    last = cast(datetime, panel["ds"].max())
    grid = pl.Series("ds", pl.datetime_range(first, last, interval=_polars_interval(freq), eager=True))
    off = panel.select("ds").unique().join(grid.to_frame("ds"), on="ds", how="anti")
    if off.height:
        raise ValueError(
            f"ds: {off.height} period(s) are not on a regular {freq} grid from {first} "
            f"(first: {off['ds'].min()!s}); check --freq"
        )
    return grid


def _siblings(grid: pl.Series, freq: str, holidays: str | None) -> np.ndarray:
    """(periods, k) indices of each period's siblings in other years, -1 padded: periods with the same
    holiday name at least half a year away for holiday periods, else ±year, ±2·year... that are not holiday
    periods themselves."""
    from chainsync.forecasting.holidays import holiday_calendar

    n = grid.len()
    year = _year_length(freq)
    labels: list[str | None] = [None] * n
    if holidays:
        first: datetime = grid[0]
        last: datetime = grid[-1]
        calendar = holiday_calendar(first.date(), last.date(), freq, holidays)
        position = {d.date(): i for i, d in enumerate(grid)}
        for day, name in calendar.iter_rows():
            i = position.get(day)
            if i is not None:
                labels[i] = name
    half = max(year // 2, 1)
    # A period is keyed by the holiday it holds, or the one in the period after it (the shopping week
    # before Easter or Christmas), or the one before it (the week after): the same key in another year is
    # the same moment of the calendar even when the holiday moved.
    keys: list[tuple[str, str] | None] = []
    for i, name in enumerate(labels):
        after = labels[i + 1] if i + 1 < n else None
        before = labels[i - 1] if i > 0 else None
        key = ("on", name) if name else ("before", after) if after else ("after", before) if before else None
        keys.append(key)
    by_key: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            by_key.setdefault(key, []).append(i)
    rows: list[list[int]] = []
    for i, key in enumerate(keys):
        if key is not None:
            rows.append([j for j in by_key[key] if abs(j - i) >= half])
        elif year:
            reach = range(-(n // year), n // year + 1)
            rows.append([j for k in reach if k and 0 <= (j := i + k * year) < n and keys[j] is None])
        else:
            rows.append([])
    width = max((len(r) for r in rows), default=0)
    out = np.full((n, max(width, 1)), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _shift(matrix: np.ndarray, offset: int) -> np.ndarray:
    """``out[:, t] = matrix[:, t + offset]`` (NaN beyond the edges)."""
    out = np.full_like(matrix, np.nan)
    if offset > 0:
        out[:, :-offset] = matrix[:, offset:]
    elif offset < 0:
        out[:, -offset:] = matrix[:, :offset]
    else:
        out[:] = matrix
    return out


def _peer_index(ids: pl.Series, panel: pl.DataFrame, column: str) -> np.ndarray:
    """Each series' group number under ``column`` of ``panel`` (its first value there)."""
    groups = panel.group_by("unique_id").agg(pl.col(column).first().cast(pl.String))
    keyed = ids.to_frame().join(groups, on="unique_id", how="left")
    return keyed[column].fill_null("").rank("dense").cast(pl.Int64).to_numpy() - 1


def _group_median(deviation: np.ndarray, group: np.ndarray, least: int = 0) -> np.ndarray:
    """(series, periods): the median deviation of the series' group that period, NaN with fewer than
    ``least`` (default MIN_PANEL_SERIES) series reporting."""
    least = least or MIN_PANEL_SERIES
    out = np.full_like(deviation, np.nan)
    for g in np.unique(group):
        members = group == g
        block = deviation[members]
        reporting = np.sum(~np.isnan(block), axis=0)
        median = np.where(reporting >= least, np.nanmedian(block, axis=0), np.nan)
        out[members] = median[None, :]
    return out


def _neighbour_movement(own: np.ndarray, k: int, min_overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """(series, periods): each series' expected own movement from its ``k`` most correlated series of the
    panel (Pearson on robust z-scores of ``own``, clipped at ±PEER_CLIP, over the periods both report,
    at least ``min_overlap`` of them): the median of their movements that period, each rescaled from its
    series' robust scale to this one's. NaN in ``own`` (missing or masked periods) is left out; 0 where no
    neighbour reports. A one-period anomaly in one series is one of ``k`` values in a median elsewhere. Also
    returns the neighbours themselves (series × k indices, -1 where a neighbour is unusable)."""
    n = own.shape[0]
    k = min(k, n - 1)
    if k < MIN_PANEL_SERIES:
        return np.zeros_like(own), np.full((n, 0), -1, dtype=np.int64)
    centre = np.nanmedian(own, axis=1, keepdims=True)
    spread = MAD_TO_SD * np.nanmedian(np.abs(own - centre), axis=1, keepdims=True)
    spread = np.where(spread > 0, spread, np.nan)
    standard = np.clip((own - centre) / spread, -PEER_CLIP, PEER_CLIP)
    reporting = ~np.isnan(standard)
    filled = np.where(reporting, standard, 0.0)
    counted = reporting.astype(np.float64)
    movement = np.full_like(own, np.nan)
    chosen = np.full((n, k), -1, dtype=np.int64)
    for a in range(0, n, PEER_CHUNK):
        b = min(a + PEER_CHUNK, n)
        overlap = counted[a:b] @ counted.T
        corr = (filled[a:b] @ filled.T) / np.maximum(overlap, 1.0)
        corr[overlap < min_overlap] = -np.inf
        corr[np.arange(b - a), np.arange(a, b)] = -np.inf  # not itself
        nearest = np.argpartition(-corr, k - 1, axis=1)[:, :k]
        usable = np.isfinite(np.take_along_axis(corr, nearest, axis=1))
        rescaled = (own[nearest] - centre[nearest]) / spread[nearest]
        values = rescaled * spread[a:b, None, :] + centre[a:b, None, :]
        values = np.where(usable[:, :, None], values, np.nan)
        movement[a:b] = np.nanmedian(values, axis=1)
        chosen[a:b] = np.where(usable, nearest, -1)
    return np.where(np.isnan(movement), 0.0, movement), chosen


def _company(z: np.ndarray, nearest: np.ndarray) -> np.ndarray:
    """(series, periods): how many of the series' neighbour series (``nearest``: series × k indices, -1
    unused) are unusual in the same direction that period (|z| ≥ COMPANY_Z, the same sign)."""
    count = np.zeros(z.shape, dtype=np.int64)
    filled = np.where(np.isnan(z), 0.0, z)
    for j in range(nearest.shape[1]):
        other = filled[np.maximum(nearest[:, j], 0)]
        usable = nearest[:, j : j + 1] >= 0
        count += usable & (np.abs(other) >= COMPANY_Z) & (np.sign(other) == np.sign(filled))
    return count


def _isolated(z: np.ndarray, least: float) -> np.ndarray:
    """(series, periods): whether both adjacent periods are ordinary: |z| below ``least``, or below
    ADJACENT_ECHO × the period's own |z| (a large one-period change moves its neighbours' local levels, so
    they echo it a little). A period beside another unusual one is part of a sustained or shifted change
    (a promotion fortnight, sales booked a week late, a step), not a one-period anomaly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        beside = np.fmax(np.abs(_shift(z, -1)), np.abs(_shift(z, 1)))
    beside = np.where(np.isnan(beside), 0.0, beside)
    return beside < np.maximum(least, ADJACENT_ECHO * np.abs(z))


def _precedent(z: np.ndarray) -> np.ndarray:
    """(series, periods): the series' largest |z| on the same side (up for a rise, down for a fall) at
    its other periods, leaving out the period and its two neighbours; 0 where there is none."""
    out = np.zeros_like(z)
    periods = np.arange(z.shape[1])[None, :]
    for sign in (1.0, -1.0):
        side = np.where(np.isnan(z), 0.0, np.clip(sign * z, 0.0, None))
        top = min(PRECEDENT_TOP, side.shape[1])
        order = np.argsort(-side, axis=1)[:, :top]  # the series' largest values (3 may be in the window)
        values = np.take_along_axis(side, order, axis=1)
        best = np.zeros_like(z)
        for k in range(top - 1, -1, -1):
            outside = np.abs(order[:, k : k + 1] - periods) > 1
            best = np.where(outside, values[:, k : k + 1], best)
        out = np.where((z >= 0) if sign > 0 else (z < 0), best, out)
    return out


def score_panel(
    panel: pl.DataFrame,
    *,
    freq: str,
    config: DetectConfig | None = None,
    peer_columns: tuple[str, ...] = (),
) -> pl.DataFrame:
    """Every scored period of ``panel`` (unique_id, ds, y; one row per series and period, ``ds`` a date or
    date-time on a regular ``freq`` grid; missing periods are allowed) with its expected value, bounds,
    robust z, effect, direction and decision (``SCORE_SCHEMA``). ``peer_columns``: columns of ``panel``
    that group series into peers (Store, Dept: every department of a store, the department in every
    store), whose shared shock in a period is taken out. See the module docstring."""
    config = config or DetectConfig()
    if panel.is_empty():
        return pl.DataFrame(schema=SCORE_SCHEMA)
    frame = (
        panel.select(
            pl.col("unique_id").cast(pl.String),
            pl.col("ds").cast(pl.Datetime("us")),
            pl.col("y").cast(pl.Float64),
        )
        .drop_nulls()
        .filter(pl.col("y").is_finite())
        .group_by("unique_id", "ds")
        .agg(pl.col("y").sum())
    )
    if frame.is_empty():
        return pl.DataFrame(schema=SCORE_SCHEMA)
    grid = _grid(frame, freq)
    ids = frame["unique_id"].unique().sort()
    located = frame.join(ids.to_frame().with_row_index("row"), on="unique_id").join(
        grid.to_frame("ds").with_row_index("col"), on="ds"
    )
    y = np.full((ids.len(), grid.len()), np.nan)
    y[located["row"].to_numpy(), located["col"].to_numpy()] = located["y"].to_numpy()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are expected at the edges
        neighbours = np.stack([_shift(y, o) for o in _level_offsets(freq)], axis=2)
        level = np.nanmedian(neighbours, axis=2)
        level[np.sum(~np.isnan(neighbours), axis=2) < 2] = np.nan
        typical = np.nanmedian(np.abs(y), axis=1, keepdims=True)
        floor = np.where(typical > 0, LEVEL_FLOOR_SHARE * typical, np.nan)
        denominator = np.maximum(np.abs(level), floor)
        deviation = (y - level) / denominator

        # Shocks shared with peers (the whole panel, then each peer grouping in turn) are taken out first.
        groups = [np.zeros(ids.len(), dtype=np.int64)] + [_peer_index(ids, panel, c) for c in peer_columns]
        shared = np.zeros_like(deviation)
        for group in groups:
            shift = _group_median(deviation - shared, group)
            shared = shared + np.where(np.isnan(shift), 0.0, shift)
        own = deviation - shared
        # What is left, the series' own movement, is predicted by the series that move most like it
        # (the same department in stores of one region, departments sold together): a hurricane week at
        # a few stores, a regional promotion.
        if config.neighbours:
            # Correlations over a year of common periods (or half the panel, when shorter).
            periods = grid.len()
            min_overlap = max(config.min_history, min(_year_length(freq) or periods, periods // 2))
            movement, nearest = _neighbour_movement(own, config.neighbours, min_overlap)
            shared = shared + movement
            own = deviation - shared
        else:
            nearest = np.full((ids.len(), 0), -1, dtype=np.int64)

        siblings = _siblings(grid, freq, config.holidays)
        padded = np.concatenate([own, np.full((own.shape[0], 1), np.nan)], axis=1)
        # The same moment in the other years: the mean of the siblings' remainders (one estimate, less
        # noisy than either sibling alone).
        season = np.nanmean(padded[:, siblings], axis=2, keepdims=True)  # -1 reads the NaN column
        # A change the adjacent periods share is sustained (a promotion week), not a one-period anomaly.
        adjacent = np.stack([_shift(own, -1), _shift(own, 1)], axis=2)
        explanations = np.concatenate([np.zeros(own.shape + (1,)), season, adjacent], axis=2)
        distance = np.abs(own[:, :, None] - explanations)
        distance = np.where(np.isnan(distance), np.inf, distance)
        choice = np.argmin(distance, axis=2)
        chosen = np.take_along_axis(explanations, choice[:, :, None], axis=2)[:, :, 0]
        chosen = np.where(np.isnan(chosen), 0.0, chosen)
        expected = level + denominator * (shared + chosen)
        base = np.maximum(np.abs(expected), floor)
        residual = (y - expected) / base

        # The series' scale: its robust spread, or its tail on that side when that is heavier (a series
        # with a promotion every few months is not surprised by one, but its drops are judged by its
        # drops); each read as a normal standard deviation.
        robust = MAD_TO_SD * np.nanmedian(np.abs(residual), axis=1, keepdims=True)
        ups = np.where(residual > 0, residual, np.nan)
        downs = np.where(residual < 0, -residual, np.nan)
        tail_up = np.nanquantile(ups, TAIL_QUANTILE, axis=1, keepdims=True) / TAIL_TO_SD
        tail_down = np.nanquantile(downs, TAIL_QUANTILE, axis=1, keepdims=True) / TAIL_TO_SD
        scale_up = np.sqrt(np.fmax(robust, tail_up) ** 2 + config.scale_floor**2)
        scale_down = np.sqrt(np.fmax(robust, tail_down) ** 2 + config.scale_floor**2)
        scale = np.where(residual >= 0, scale_up, scale_down)
        z = residual / scale
        # A period where a whole group is unsettled (the week after Christmas, a blizzard at one store)
        # widens the scale of its members: the group's median |z| that period over the usual median |z|.
        usual = np.nanmedian(np.abs(z))
        widen = np.ones_like(z)
        for group in groups:
            unsettled = _group_median(np.abs(z), group, MIN_WIDEN_SERIES) / usual
            widen = np.maximum(widen, np.where(np.isnan(unsettled), 1.0, unsettled))
        scale = scale * widen
        z = residual / scale
        scale_up, scale_down = scale_up * widen, scale_down * widen
        min_amount = config.min_amount_share * float(np.nanmedian(typical))
    history = np.sum(~np.isnan(y), axis=1, keepdims=True)
    scored = ~np.isnan(z) & (history >= config.min_history)
    flagged = (
        scored
        & (np.abs(z) >= config.z)
        & (np.abs(residual) >= config.min_effect)
        & (np.abs(y - expected) >= min_amount)
    )
    if config.isolation:
        flagged &= _isolated(z, config.isolation)
    if config.precedent:
        flagged &= np.abs(z) >= config.precedent * _precedent(z)
    if config.company and nearest.shape[1]:
        flagged &= _company(z, nearest) < config.company
    half_up = np.maximum(base * np.maximum(config.z * scale_up, config.min_effect), min_amount)
    half_down = np.maximum(base * np.maximum(config.z * scale_down, config.min_effect), min_amount)
    kinds = np.array(["level", "season", "adjacent", "adjacent"])

    rows, cols = np.nonzero(scored)
    return pl.DataFrame(
        {
            "unique_id": ids.gather(rows),
            "ds": grid.gather(cols),
            "y": y[rows, cols],
            "expected": expected[rows, cols],
            "lo": (expected - half_down)[rows, cols],
            "hi": (expected + half_up)[rows, cols],
            "z": z[rows, cols],
            "score": np.abs(z[rows, cols]),
            "effect": residual[rows, cols],
            "direction": np.where(residual[rows, cols] >= 0, "up", "down"),
            "explained_by": kinds[choice[rows, cols]],
            "is_anomaly": flagged[rows, cols],
        },
        schema=SCORE_SCHEMA,
    )


def detect_panel(
    panel: pl.DataFrame,
    *,
    freq: str,
    config: DetectConfig | None = None,
    since: date | datetime | None = None,
    peer_columns: tuple[str, ...] = (),
) -> pl.DataFrame:
    """The flagged periods of ``panel`` (``DETECT_COLUMNS``: unique_id, ds, score, direction, expected, lo,
    hi) by series and period; ``since`` keeps periods on or after it (the whole history is
    still the context)."""
    scored = score_panel(panel, freq=freq, config=config, peer_columns=peer_columns).filter(
        pl.col("is_anomaly")
    )
    if since is not None:
        scored = scored.filter(pl.col("ds") >= pl.lit(since).cast(pl.Datetime("us")))
    return scored.sort("unique_id", "ds").select(DETECT_COLUMNS)


def with_id_columns(panel: pl.DataFrame, id_cols: list[str]) -> pl.DataFrame:
    """``panel`` with its id columns back, split from ``unique_id`` (the values joined by ``_``, as
    ``tools.backtest.read_panel`` builds it), for ``peer_columns``. With one id column, or ids whose
    values hold ``_`` themselves, there is nothing to split reliably and the panel comes back unchanged."""
    if len(id_cols) < 2:
        return panel
    parts = pl.col("unique_id").str.split("_")
    if not panel.select((parts.list.len() == len(id_cols)).all()).item():
        return panel
    return panel.with_columns([parts.list.get(i).alias(c) for i, c in enumerate(id_cols)])
