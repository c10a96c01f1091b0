"""Holiday effects for the forecast: a holiday calendar and a multiplicative effect per series and holiday.

**Calendar** (``holiday_dates``): the public holidays of a country from the ``holidays`` library (actual
dates, not the observed days off) plus the retail days public-holiday calendars lack: Valentine's Day, Easter
Sunday, Halloween, New Year's Eve, Christmas Eve, Boxing Day and the Christmas shopping week (17–23 December)
everywhere; Super Bowl Sunday, Thanksgiving Eve and Black Friday in the US. These are the days the
generator's chain plants demand on (``tools.generator.calendar``), and the ones a retailer sees.

For weekly data (``W-FRI`` etc., periods labelled by the day they end, as pandas does) a holiday is mapped to
the week that contains it, and only the holidays that move a week's total are kept (``WEEKLY_HOLIDAYS``:
Walmart's Super Bowl, Labor Day, Thanksgiving and Christmas weeks, plus Easter, Memorial Day and Independence
Day); a week with two of them is named after the first in that list.

**Effect** (``remove_holiday_effects``): for every holiday period in a series' history the baseline is the
mean of the neighbouring non-holiday periods at the same seasonal position (the same weekday one and two
weeks before and after for daily data, the two weeks either side for weekly data). Per holiday, a pooled
multiplier ``P = Σ actual / Σ baseline`` over every series; per series
``effect = (Y + P·b̄) / (B + b̄)`` — its own actuals ``Y`` over its baselines ``B``, shrunk towards ``P`` by
one occurrence's baseline ``b̄`` (one or two past holidays per series are noisy). History on holiday
periods is divided by the effect (or replaced by the baseline where the effect is below 0.2: closed days)
before the models fit; ``apply_holiday_effects`` multiplies the forecast and its bounds on holiday periods
in the horizon by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

WEEKLY_HOLIDAYS = (
    "Christmas Day",
    "Thanksgiving Day",
    "Super Bowl",
    "Labor Day",
    "Easter Sunday",
    "Memorial Day",
    "Independence Day",
)
CLOSED_EFFECT = 0.2  # below this multiplier a holiday is treated as a (mostly) closed day
_WEEKDAYS = {"MON": 0, "TUE": 1, "WED": 2, "THU": 3, "FRI": 4, "SAT": 5, "SUN": 6}


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def super_bowl(year: int) -> date:
    """Super Bowl Sunday: the first Sunday of February until 2021, the second from 2022 (17-game season)."""
    return _nth_weekday(year, 2, 6, 1 if year < 2022 else 2)


def holiday_dates(start: date, end: date, country: str = "US") -> dict[date, str]:
    """Holiday name per date from ``start`` to ``end`` (inclusive): the country's public holidays plus the
    retail days (see the module docstring). Where two fall on one date the retail day's name wins."""
    import holidays
    from dateutil.easter import easter  # type: ignore[import-untyped]  # installed with holidays

    years = list(range(start.year, end.year + 1))
    try:
        public = holidays.country_holidays(country, years=years, observed=False)
    except NotImplementedError:
        raise ValueError(f"no holiday calendar for country {country!r} (a code such as US, GB, DE)") from None
    out: dict[date, str] = {d: name.split(";")[0].strip() for d, name in public.items()}
    for year in years:
        retail = {
            date(year, 2, 14): "Valentine's Day",
            easter(year): "Easter Sunday",
            date(year, 10, 31): "Halloween",
            date(year, 12, 24): "Christmas Eve",
            date(year, 12, 26): "Boxing Day",
            date(year, 12, 31): "New Year's Eve",
        }
        for day in range(17, 24):
            retail[date(year, 12, day)] = "Christmas shopping week"
        if country.upper() == "US":
            thanksgiving = _nth_weekday(year, 11, 3, 4)
            retail[super_bowl(year)] = "Super Bowl"
            retail[thanksgiving - timedelta(days=1)] = "Thanksgiving Eve"
            retail[thanksgiving + timedelta(days=1)] = "Black Friday"
        for day, name in retail.items():
            if day not in out or name != "Christmas shopping week":
                out[day] = name
    return {d: n for d, n in sorted(out.items()) if start <= d <= end}


def week_anchor(freq: str) -> int | None:
    """The weekday (Monday 0) a weekly period ends on (``W-FRI`` -> 4, ``W``/``1w`` -> 6, pandas' default);
    None when ``freq`` is not weekly."""
    f = freq.upper().lstrip("0123456789")
    if not f.startswith("W"):
        return None
    _, _, suffix = f.partition("-")
    return _WEEKDAYS.get(suffix[:3], 6)


def is_daily(freq: str) -> bool:
    return freq.upper().lstrip("0123456789") == "D"


def holiday_calendar(start: date, end: date, freq: str, country: str = "US") -> pl.DataFrame:
    """``ds`` (date: the day, or the end of the week for weekly data), ``holiday`` (name) for the holiday
    periods between ``start`` and ``end``; empty for frequencies other than daily and weekly."""
    empty = pl.DataFrame(schema={"ds": pl.Date(), "holiday": pl.String()})
    anchor = week_anchor(freq)
    if anchor is None and not is_daily(freq):
        return empty
    days = holiday_dates(start - timedelta(days=7), end + timedelta(days=7), country)
    if anchor is None:
        rows = [(d, n) for d, n in days.items() if start <= d <= end]
    else:
        weeks: dict[date, str] = {}
        for day, name in days.items():
            if name not in WEEKLY_HOLIDAYS:
                continue
            label = day + timedelta(days=(anchor - day.weekday()) % 7)
            current = weeks.get(label)
            if current is None or WEEKLY_HOLIDAYS.index(name) < WEEKLY_HOLIDAYS.index(current):
                weeks[label] = name
        rows = [(d, n) for d, n in sorted(weeks.items()) if start <= d <= end]
    if not rows:
        return empty
    return pl.DataFrame(rows, schema={"ds": pl.Date(), "holiday": pl.String()}, orient="row")


def _neighbour_offsets(freq: str) -> tuple[int, ...]:
    return (-14, -7, 7, 14) if is_daily(freq) else (-2, -1, 1, 2)


def remove_holiday_effects(
    frame: pl.DataFrame, calendar: pl.DataFrame, freq: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``frame`` (unique_id, ds, y; gap-free per series) with holiday periods divided by their effect, and
    the effects: unique_id, holiday, effect (per series, shrunk), pooled (all series), occurrences.

    See the module docstring for the estimate."""
    effects_schema = {
        "unique_id": pl.String(),
        "holiday": pl.String(),
        "effect": pl.Float64(),
        "pooled": pl.Float64(),
        "occurrences": pl.UInt32(),
    }
    if calendar.is_empty() or frame.is_empty():
        return frame, pl.DataFrame(schema=effects_schema)
    ds_type = frame.schema["ds"]
    tagged = (
        frame.with_columns(_day=pl.col("ds").cast(pl.Date))
        .join(calendar.rename({"ds": "_day"}), on="_day", how="left")
        .drop("_day")
        .sort("unique_id", "ds")  # the shifts below need each series in time order
    )
    is_holiday = pl.col("holiday").is_not_null()
    neighbours = []
    for k in _neighbour_offsets(freq):
        # shift(-k) looks k periods ahead; a holiday neighbour does not count.
        value = pl.col("y").shift(-k).over("unique_id")
        usable = is_holiday.shift(-k).over("unique_id").not_()
        neighbours.append(pl.when(usable).then(value).otherwise(None))
    tagged = tagged.with_columns(
        baseline=pl.when(is_holiday).then(pl.mean_horizontal(*neighbours)).otherwise(None)
    )
    observed = tagged.filter(pl.col("baseline").is_not_null())
    if observed.is_empty():
        return frame, pl.DataFrame(schema=effects_schema)
    # Ordered groups and sums: an unordered parallel sum differs in the last bits from run to run, enough
    # to flip a split of the global LightGBM model fitted on the adjusted history.
    per_series = observed.group_by("unique_id", "holiday", maintain_order=True).agg(
        actual=pl.col("y").sum(),
        base=pl.col("baseline").sum(),
        occurrences=pl.len().cast(pl.UInt32),
    )
    pooled = (
        per_series.sort("holiday", "unique_id")
        .group_by("holiday", maintain_order=True)
        .agg(
            pooled=pl.when(pl.col("base").sum() > 0)
            .then(pl.col("actual").sum() / pl.col("base").sum())
            .otherwise(1.0)
        )
    )
    effects = (
        per_series.join(pooled, on="holiday")
        .with_columns(prior=pl.col("base") / pl.col("occurrences"))
        .with_columns(
            effect=pl.when(pl.col("base") + pl.col("prior") > 0)
            .then(
                (pl.col("actual") + pl.col("pooled") * pl.col("prior")) / (pl.col("base") + pl.col("prior"))
            )
            .otherwise(pl.col("pooled"))
            .clip(0.0, 10.0)
        )
        .select(list(effects_schema))
        .cast(effects_schema)  # type: ignore[arg-type]
    )
    adjusted = (
        tagged.join(effects.select("unique_id", "holiday", "effect"), on=["unique_id", "holiday"], how="left")
        .with_columns(
            y=pl.when(pl.col("effect").is_null() | pl.col("baseline").is_null())
            .then(pl.col("y"))
            .when(pl.col("effect") < CLOSED_EFFECT)
            .then(pl.col("baseline"))
            .otherwise(pl.col("y") / pl.col("effect"))
        )
        .select("unique_id", pl.col("ds").cast(ds_type), "y")
    )
    return adjusted, effects


def apply_holiday_effects(
    forecasts: pl.DataFrame, calendar: pl.DataFrame, effects: pl.DataFrame, columns: list[str]
) -> pl.DataFrame:
    """Multiply ``columns`` of ``forecasts`` (unique_id, ds, ...) by the series' effect of the holiday on
    that period (the pooled effect for a series that has not seen that holiday; 1 off holidays)."""
    if calendar.is_empty() or effects.is_empty() or forecasts.is_empty():
        return forecasts
    pooled = effects.group_by("holiday").agg(pl.col("pooled").first())
    return (
        forecasts.with_columns(_day=pl.col("ds").cast(pl.Date))
        .join(calendar.rename({"ds": "_day"}), on="_day", how="left")
        .join(effects.select("unique_id", "holiday", "effect"), on=["unique_id", "holiday"], how="left")
        .join(pooled, on="holiday", how="left")
        .with_columns(_factor=pl.coalesce("effect", "pooled", pl.lit(1.0)))
        .with_columns([(pl.col(c) * pl.col("_factor")).alias(c) for c in columns])
        .select(forecasts.columns)
        .sort("unique_id", "ds")
    )


@dataclass(frozen=True)
class HolidayAdjustment:
    """A history with holiday effects taken out (``history``), and how to put them back on a forecast."""

    history: pl.DataFrame
    calendar: pl.DataFrame
    effects: pl.DataFrame

    def restore(self, forecasts: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
        """``forecasts`` (unique_id, ds, ``columns``...) with ``columns`` times the holiday effects."""
        return apply_holiday_effects(forecasts, self.calendar, self.effects, columns)


def adjust_for_holidays(frame: pl.DataFrame, *, horizon: int, freq: str, country: str) -> HolidayAdjustment:
    """Take the holiday effects of ``country``'s calendar out of ``frame`` (unique_id, ds, y; gap-free),
    with the calendar reaching ``horizon`` periods past the last ``ds``. The one holiday step every method
    shares — ours (``forecast_panel(..., holidays=...)``), the backtest's baselines and the benchmark's —
    so a comparison gives each side the same holiday knowledge."""
    first, last = frame.select(
        pl.col("ds").min().cast(pl.Date).alias("first"), pl.col("ds").max().cast(pl.Date).alias("last")
    ).row(0)
    span_days = horizon * (7 if week_anchor(freq) is not None else 1) + 7
    calendar = holiday_calendar(first, last + timedelta(days=span_days), freq, country)
    adjusted, effects = remove_holiday_effects(frame.select("unique_id", "ds", "y"), calendar, freq)
    return HolidayAdjustment(history=adjusted, calendar=calendar, effects=effects)
