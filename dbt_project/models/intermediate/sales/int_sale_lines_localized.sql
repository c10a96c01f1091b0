-- Sale lines on their store's business day: a sale at 21:00 in New York is that day's trade, not the next
-- UTC day's. Stores without a known timezone fall back to UTC.

with sale_lines as (
    select * from {{ ref('stg_pos__sale_lines') }}
),

stores as (
    select store_id, timezone from {{ ref('stg_pos__stores') }}
),

localized as (
    select
        sale_lines.*,
        timezone(coalesce(stores.timezone, 'UTC'), sale_lines.occurred_at at time zone 'UTC') as occurred_at_local
    from sale_lines
    left join stores using (store_id)
)

select
    *,
    cast(occurred_at_local as date) as sale_date
from localized
