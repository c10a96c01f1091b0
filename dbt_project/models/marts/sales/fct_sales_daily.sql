{{
    config(
        materialized='incremental',
        unique_key=['store_id', 'product_id', 'sale_date'],
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}

-- Store x product x day totals. Incremental: the days touched by lines newer than the last build are
-- recomputed in full (delete+insert on the grain), so late or offline-synced events land correctly.

-- Not materialized: read twice below, a materialized CTE would convert every line's timezone before the
-- filters that skip the untouched history could reach the scan.
with sale_lines as not materialized (
    select * from {{ ref('int_sale_lines_localized') }}
),

{% if is_incremental() %}
touched_days as (
    select distinct store_id, product_id, sale_date
    from sale_lines
    -- coalesce guards an empty {{ this }} (max() of no rows is null)
    where seq > (select coalesce(max(max_seq), 0) from {{ this }})
),

lines_in_scope as (
    select sale_lines.*
    from sale_lines
    semi join touched_days using (store_id, product_id, sale_date)
    -- Redundant with the semi join, but on the stored occurred_at: the scan skips the history outside the
    -- touched days instead of converting every line's timezone first (var business_day_margin_days).
    where sale_lines.occurred_at
        >= (select min(sale_date) from touched_days) - interval {{ var('business_day_margin_days') }} day
      and sale_lines.occurred_at
        < (select max(sale_date) from touched_days) + interval {{ var('business_day_margin_days') + 1 }} day
),
{% else %}
lines_in_scope as (
    select * from sale_lines
),
{% endif %}

deduplicated as (
    select *
    from lines_in_scope
    qualify row_number() over (partition by event_id, line_no order by seq) = 1
),

signed as (
    select
        *,
        case sale_kind when 'sale' then 1 when 'refund' then -1 else 0 end as direction
    from deduplicated
    where sale_kind != 'void'
),

daily as (
    select
        store_id,
        product_id,
        sale_date,
        sum(direction * quantity) as units_sold,
        sum(case when sale_kind = 'refund' then quantity else 0 end) as refund_units,
        sum(direction * quantity * unit_price_cents) as gross_revenue_cents,
        sum(direction * discount_cents) as discount_cents,
        sum(direction * (quantity * unit_price_cents - discount_cents)) as net_revenue_cents,
        count(distinct case when sale_kind = 'sale' then transaction_id end) as transactions,
        max(seq) as max_seq
    from signed
    group by store_id, product_id, sale_date
)

select
    store_id || '|' || product_id || '|' || strftime(sale_date, '%Y-%m-%d') as sales_daily_id,
    store_id,
    product_id,
    sale_date,
    cast(units_sold as bigint) as units_sold,
    cast(refund_units as bigint) as refund_units,
    cast(gross_revenue_cents as bigint) as gross_revenue_cents,
    cast(discount_cents as bigint) as discount_cents,
    cast(net_revenue_cents as bigint) as net_revenue_cents,
    cast(transactions as bigint) as transactions,
    max_seq
from daily
