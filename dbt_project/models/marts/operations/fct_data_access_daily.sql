-- Per principal (user or terminal) and day: how much they read, how many stores and routes, and how much
-- of it off hours. The unusual-access detector (pipelines/defs/access) compares each day with the
-- principal's own earlier days.
--
-- Hours and days are local: a read of one store in that store's timezone, any other read in the chain's
-- (its stores' most common timezone; UTC when no store is known). Off hours are before
-- `access_day_start_hour` or from `access_day_end_hour` on (dbt vars, 6 and 22 by default).

with records as (
    select * from {{ ref('stg_ops__data_access') }}
),

stores as (
    select store_id, timezone from {{ ref('stg_pos__stores') }}
),

chain as (
    select coalesce(mode(timezone), 'UTC') as timezone from stores where timezone is not null
),

localized as (
    select
        records.*,
        timezone(
            coalesce(stores.timezone, (select timezone from chain), 'UTC'), records.occurred_at at time zone 'UTC'
        ) as occurred_at_local
    from records
    left join stores using (store_id)
),

dated as (
    select
        *,
        cast(occurred_at_local as date) as access_date,
        hour(occurred_at_local) < {{ var('access_day_start_hour', 6) }}
            or hour(occurred_at_local) >= {{ var('access_day_end_hour', 22) }} as is_off_hours
    from localized
),

first_reads as (
    -- The day each principal first read each store: a store read for the first time is "new" that day.
    select principal, store_id, min(access_date) as first_read_on
    from dated
    where store_id is not null
    group by all
)

select
    dated.principal || ' @ ' || strftime(dated.access_date, '%Y-%m-%d') as principal_day,
    dated.principal,
    any_value(dated.principal_kind) as principal_kind,
    arg_max(dated.role, dated.occurred_at) as role,
    dated.access_date,
    count(*) as reads,
    count(dated.store_id) as store_reads,
    count(distinct dated.store_id) as distinct_stores,
    count(distinct dated.store_id) filter (where first_reads.first_read_on = dated.access_date) as new_stores,
    string_agg(distinct dated.store_id, ',' order by dated.store_id) as stores,
    count(distinct dated.endpoint) as distinct_routes,
    count(*) filter (where dated.is_off_hours) as off_hours_reads,
    count(*) filter (where dated.is_off_hours) / count(*) as off_hours_share,
    count(distinct dated.source_ip) as source_ips,
    min(dated.occurred_at) as first_at,
    max(dated.occurred_at) as last_at
from dated
left join first_reads using (principal, store_id)
group by dated.principal, dated.access_date
order by dated.principal, dated.access_date
