"""The business-day margin the incremental builds prune by (``business_day_margin_days`` in
``dbt_project.yml``): a line's store-local business day lies within that many days of its UTC date, in the
furthest timezones either way, across a daylight-saving change, on DuckDB's own conversion (the one
``int_sale_lines_localized`` makes)."""

from __future__ import annotations

import duckdb

from pipelines.resources import dbt_project_var


def test_every_business_day_lies_within_the_margin_of_its_utc_date() -> None:
    margin = int(dbt_project_var("business_day_margin_days"))
    zones = ["Pacific/Kiritimati", "Etc/GMT+12", "Pacific/Chatham", "America/St_Johns", "Europe/Oslo", "UTC"]
    with duckdb.connect() as con:
        outside = con.execute(
            f"""
            with stamps as (
                select unnest(generate_series(timestamp '2026-01-01', timestamp '2026-12-31 23:45:00',
                                              interval 15 minute)) as occurred_at
            ),
            zones as (select unnest(?) as timezone),
            localized as (
                select occurred_at,
                       cast(timezone(timezone, occurred_at at time zone 'UTC') as date) as sale_date
                from stamps, zones
            )
            select count(*) from localized
            where not (occurred_at >= sale_date - interval {margin} day
                       and occurred_at < sale_date + interval {margin + 1} day)
            """,
            [zones],
        ).fetchone()
    assert outside == (0,)
