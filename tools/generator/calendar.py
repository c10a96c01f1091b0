"""The chain's calendar: US retail holidays, weekly and yearly seasonality, local-time offsets."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np

# Demand multiplier by weekday (Monday first): weekends are busiest, early week quietest.
WEEKLY_PROFILE = np.array([0.86, 0.84, 0.90, 0.96, 1.14, 1.34, 0.96])

OPEN_HOUR, CLOSE_HOUR = 8, 21  # local opening hours, every open day
# Relative transaction volume for each opening hour 08:00 … 20:00: a lunch and an after-work peak.
HOURLY_PROFILE = np.array([3, 4, 5, 7, 9, 8, 6, 6, 7, 9, 10, 8, 5], dtype=float)
HOURLY_PROFILE /= HOURLY_PROFILE.sum()


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _easter(year: int) -> date:
    # Anonymous Gregorian algorithm.
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    day = (h + l_ - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def retail_holidays(year: int) -> dict[date, tuple[str, float]]:
    """Major US retail days of ``year``: name and demand multiplier; 0.0 means every store is closed."""
    thanksgiving = _nth_weekday(year, 11, 3, 4)
    days: dict[date, tuple[str, float]] = {
        date(year, 1, 1): ("New Year's Day", 0.0),
        date(year, 2, 14): ("Valentine's Day", 1.15),
        _easter(year): ("Easter Sunday", 0.0),
        _last_weekday(year, 5, 0): ("Memorial Day", 1.30),
        date(year, 7, 4): ("Independence Day", 1.35),
        _nth_weekday(year, 9, 0, 1): ("Labor Day", 1.25),
        date(year, 10, 31): ("Halloween", 1.20),
        thanksgiving - timedelta(days=1): ("Thanksgiving Eve", 1.30),
        thanksgiving: ("Thanksgiving", 0.0),
        thanksgiving + timedelta(days=1): ("Black Friday", 2.30),
        date(year, 12, 24): ("Christmas Eve", 1.60),
        date(year, 12, 25): ("Christmas Day", 0.0),
        date(year, 12, 26): ("Boxing Day", 1.40),
        date(year, 12, 31): ("New Year's Eve", 1.25),
    }
    for day in range(17, 24):  # the week before Christmas
        days.setdefault(date(year, 12, day), ("Christmas shopping", 1.35))
    return days


def holiday_factors(days: list[date]) -> tuple[np.ndarray, list[str | None]]:
    """Demand multiplier (0 = closed) and holiday name for each day."""
    by_year = {y: retail_holidays(y) for y in {d.year for d in days}}
    hits = [by_year[d.year].get(d) for d in days]
    factor = np.array([h[1] if h else 1.0 for h in hits])
    return factor, [h[0] if h else None for h in hits]


def utc_offsets(timezones: list[str], days: list[date]) -> np.ndarray:
    """Seconds east of UTC at local noon, shape (len(timezones), len(days)). One value per day is
    exact for every time the stores are open (DST switches at 02:00)."""
    out = np.zeros((len(timezones), len(days)), dtype=np.int64)
    cache: dict[str, np.ndarray] = {}
    for i, tz in enumerate(timezones):
        if tz not in cache:
            zone = ZoneInfo(tz)
            cache[tz] = np.array(
                [int(datetime.combine(d, time(12), zone).utcoffset().total_seconds()) for d in days]  # type: ignore[union-attr]
            )
        out[i] = cache[tz]
    return out
